"""Mail client set-up from an address alone: Thunderbird's autoconfig, Outlook's
autodiscover and an Apple configuration profile, each naming this server's
listeners (implicit TLS first, RFC 8314 §3) and the full address as the user name.

- Thunderbird asks https://autoconfig.DOMAIN/mail/config-v1.1.xml?emailaddress=A
  (and DOMAIN/.well-known/autoconfig/...): the "clientConfig" format of
  https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat.
- Outlook POSTs an autodiscover request ("requestschema/2006") to
  https://autodiscover.DOMAIN/autodiscover/autodiscover.xml and reads the POX
  answer ("outlook/responseschema/2006a").
- An iPhone or a Mac installs a .mobileconfig (com.apple.mail.managed payload);
  it asks for the password when it is installed.

Only a hosted domain gets an answer (404 otherwise); whether the mailbox exists
is not told, so the endpoints cannot be used to find addresses.
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from postfach.address import (
    AddressError,
    display_domain,
    domain_of,
    normalize_address,
    normalize_domain,
)
from postfach.config import IMPLICIT_TLS, ListenAddress
from postfach.store.base import Store

# An autodiscover request is a few hundred bytes; a body larger than this is not one.
MAX_REQUEST_BYTES = 16 * 1024

_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


@dataclass(frozen=True, slots=True)
class Door:
    """A listener as a mail client is told of it."""

    protocol: str  # "imap", "pop3", "smtp"
    port: int
    implicit_tls: bool  # False: STARTTLS (STLS for POP3) before anything else


# Listener name -> protocol, in the order clients are offered them (implicit TLS first).
_DOORS = (
    ("imaps", "imap"),
    ("imap", "imap"),
    ("pop3s", "pop3"),
    ("pop3", "pop3"),
    ("submissions", "smtp"),
    ("submission", "smtp"),
)


def doors(listening: Mapping[str, ListenAddress]) -> list[Door]:
    """The doors for mail clients among the listeners that run (the MX port is not one)."""
    return [
        Door(protocol, listening[name].port, name in IMPLICIT_TLS) for name, protocol in _DOORS if name in listening
    ]


class BadRequest(ValueError):
    """The request does not say, in a form read here, which address to set up; the message is one sentence."""


def thunderbird_config(domain: str, hostname: str, offered: list[Door]) -> bytes:
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"Mail for {display_domain(domain)}"
    ET.SubElement(provider, "displayShortName").text = display_domain(domain)
    for door in offered:
        tag = "outgoingServer" if door.protocol == "smtp" else "incomingServer"
        server = ET.SubElement(provider, tag, type=door.protocol)
        ET.SubElement(server, "hostname").text = hostname
        ET.SubElement(server, "port").text = str(door.port)
        ET.SubElement(server, "socketType").text = "SSL" if door.implicit_tls else "STARTTLS"
        # The placeholder is what the user typed; the server takes any case of it.
        ET.SubElement(server, "username").text = "%EMAILADDRESS%"
        ET.SubElement(server, "authentication").text = "password-cleartext"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def outlook_address(body: bytes) -> str:
    """The EMailAddress of an autodiscover request (BadRequest when there is none)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise BadRequest("the autodiscover request is too large")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as error:
        raise BadRequest(f"the autodiscover request is not well-formed XML ({error})") from None
    # Outlook sends the request schema's namespace; some clients send none.
    found = root.find(f"{{{_REQUEST_NS}}}Request/{{{_REQUEST_NS}}}EMailAddress")
    if found is None:
        found = root.find("Request/EMailAddress")
    if found is None or not (found.text or "").strip():
        raise BadRequest("the autodiscover request names no EMailAddress")
    return found.text.strip()


def outlook_config(address: str, hostname: str, offered: list[Door]) -> bytes:
    root = ET.Element("Autodiscover", xmlns=_RESPONSE_NS)
    response = ET.SubElement(root, "Response", xmlns=_OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    seen = set()
    for door in offered:
        if door.protocol in seen:
            continue  # Outlook takes one entry per protocol: the first, implicit TLS when it runs
        seen.add(door.protocol)
        protocol = ET.SubElement(account, "Protocol")
        ET.SubElement(protocol, "Type").text = door.protocol.upper()
        ET.SubElement(protocol, "Server").text = hostname
        ET.SubElement(protocol, "Port").text = str(door.port)
        ET.SubElement(protocol, "LoginName").text = address
        ET.SubElement(protocol, "DomainRequired").text = "off"
        ET.SubElement(protocol, "SPA").text = "off"
        if door.implicit_tls:
            ET.SubElement(protocol, "SSL").text = "on"
        else:
            ET.SubElement(protocol, "SSL").text = "off"
            ET.SubElement(protocol, "Encryption").text = "TLS"  # STARTTLS
        ET.SubElement(protocol, "AuthRequired").text = "on"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def apple_profile(address: str, hostname: str, offered: list[Door]) -> bytes:
    """A configuration profile with one IMAP (or, without IMAP, POP3) account and its SMTP server."""
    incoming = next((d for d in offered if d.protocol == "imap"), None) or next(
        (d for d in offered if d.protocol == "pop3"), None
    )
    outgoing = next((d for d in offered if d.protocol == "smtp"), None)
    if incoming is None or outgoing is None:
        raise LookupError("this server runs no IMAP/POP3 or no submission listener")
    # The same address gets the same identifiers: installing the profile again replaces it.
    account_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"postfach:mail:{address}")).upper()
    profile_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"postfach:profile:{address}")).upper()
    reversed_host = ".".join(reversed(hostname.split(".")))
    account = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reversed_host}.mail.{account_uuid}",
        "PayloadUUID": account_uuid,
        "PayloadDisplayName": address,
        "EmailAccountDescription": address,
        "EmailAccountName": address,
        "EmailAddress": address,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "IncomingMailServerHostName": hostname,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": True,  # implicit TLS or STARTTLS: iOS asks for TLS either way
        "IncomingMailServerUsername": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": hostname,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{reversed_host}.profile.{profile_uuid}",
        "PayloadUUID": profile_uuid,
        "PayloadDisplayName": f"Mail for {address}",
        "PayloadDescription": f"Sets up {address} on {hostname}.",
        "PayloadContent": [account],
    }
    return plistlib.dumps(profile)


def routes(store: Store, hostname: str, listening: Callable[[], Mapping[str, ListenAddress]]) -> list[Route]:
    async def hosted(domain: str) -> bool:
        return await store.get_domain(domain) is not None

    def bad(reason: str) -> Response:
        return PlainTextResponse(reason + "\n", status_code=400)

    def not_hosted(domain: str) -> Response:
        return PlainTextResponse(f"{domain} is not hosted here\n", status_code=404)

    def address_from(text: str) -> tuple[str, str]:
        try:
            address = normalize_address(text)
        except AddressError as error:
            raise BadRequest(str(error)) from None
        return address, domain_of(address)

    async def thunderbird(request: Request) -> Response:
        text = request.query_params.get("emailaddress")
        host = request.url.hostname or ""
        try:
            if text is not None:
                _, domain = address_from(text)
            elif host.startswith("autoconfig."):  # without the parameter: the name asked for
                domain = normalize_domain(host.removeprefix("autoconfig."))
            else:
                raise BadRequest("name the address to set up: ?emailaddress=name@domain")
        except (BadRequest, AddressError) as error:
            return bad(str(error))
        if not await hosted(domain):
            return not_hosted(domain)
        return Response(thunderbird_config(domain, hostname, doors(listening())), media_type="application/xml")

    async def outlook(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():  # read no more than a request can be
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                break
        try:
            address, domain = address_from(outlook_address(body))
        except BadRequest as error:
            return bad(str(error))
        if not await hosted(domain):
            return not_hosted(domain)
        return Response(outlook_config(address, hostname, doors(listening())), media_type="application/xml")

    async def apple(request: Request) -> Response:
        try:
            address, domain = address_from(request.query_params.get("emailaddress") or "")
        except BadRequest as error:
            return bad(f"{error} (name it: ?emailaddress=name@domain)")
        if not await hosted(domain):
            return not_hosted(domain)
        try:
            profile = apple_profile(address, hostname, doors(listening()))
        except LookupError as error:
            return PlainTextResponse(f"{error}\n", status_code=404)
        return Response(
            profile,
            media_type="application/x-apple-aspen-config",
            headers={"Content-Disposition": f'attachment; filename="{domain}.mobileconfig"'},
        )

    return [
        Route("/mail/config-v1.1.xml", thunderbird),
        Route("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird),
        # Outlook spells the path either way.
        Route("/autodiscover/autodiscover.xml", outlook, methods=["POST"]),
        Route("/Autodiscover/Autodiscover.xml", outlook, methods=["POST"]),
        Route("/apple/mobileconfig", apple),
    ]
