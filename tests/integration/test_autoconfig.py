"""Client set-up from an address alone (web/autoconfig.py), over the HTTPS listener: what
Thunderbird, Outlook and an iPhone are told, and that a client following it logs in."""

import asyncio
import http.client
import imaplib
import plistlib
import poplib
import smtplib
import xml.etree.ElementTree as ET

import pytest

from postfach.web.autoconfig import MAX_REQUEST_BYTES
from tests.support.accounts import PASSWORD, make_account
from tests.support.config import make_config
from tests.support.server import running_server
from tests.support.tls import insecure_context

ADDRESS = "alice@example.com"
OUTLOOK_REQUEST = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">'
    "<Request><EMailAddress>{}</EMailAddress><AcceptableResponseSchema>"
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
    "</AcceptableResponseSchema></Request></Autodiscover>"
)
OUTLOOK_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"


@pytest.fixture
async def server(tmp_path):
    async with running_server(make_config(tmp_path)) as running:
        await make_account(running.store, ADDRESS)
        yield running


def fetch(server, method: str, path: str, body: bytes | None = None, host: str | None = None):
    address = server.addresses["http"]
    connection = http.client.HTTPSConnection(address.host, address.port, context=insecure_context(), timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


async def get(server, path, **options):
    return await asyncio.to_thread(fetch, server, "GET", path, **options)


def thunderbird_servers(body: bytes) -> list[dict[str, str]]:
    provider = ET.fromstring(body).find("emailProvider")
    return [
        {"kind": server.tag, "type": server.get("type"), **{child.tag: child.text for child in server}}
        for server in provider
        if server.tag in ("incomingServer", "outgoingServer")
    ]


def log_in_as_told(server, told: dict[str, str]) -> bool:
    """Log in the way one <incomingServer>/<outgoingServer> says (to 127.0.0.1: the name is not in DNS)."""
    port, starttls = int(told["port"]), told["socketType"] == "STARTTLS"
    user = told["username"].replace("%EMAILADDRESS%", "Alice@Example.COM")  # as a user may type it
    context = insecure_context()
    if told["type"] == "imap":
        if starttls:
            client = imaplib.IMAP4("127.0.0.1", port)
            client.starttls(context)
        else:
            client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context)
        ok = client.login(user, PASSWORD)[0] == "OK"
        client.logout()
    elif told["type"] == "pop3":
        client = poplib.POP3("127.0.0.1", port) if starttls else poplib.POP3_SSL("127.0.0.1", port, context=context)
        if starttls:
            client.stls(context)
        client.user(user)
        ok = client.pass_(PASSWORD).startswith(b"+OK")
        client.quit()
    else:
        client = smtplib.SMTP("127.0.0.1", port) if starttls else smtplib.SMTP_SSL("127.0.0.1", port, context=context)
        if starttls:
            client.starttls(context=context)
        ok = client.login(user, PASSWORD)[0] == 235
        client.quit()
    return ok


async def test_thunderbird_is_told_every_door_and_each_one_lets_the_user_in(server):
    status, media, body = await get(server, f"/mail/config-v1.1.xml?emailaddress={ADDRESS}")
    assert status == 200 and media.startswith("application/xml")
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    assert root.find("emailProvider").get("id") == "example.com"
    told = thunderbird_servers(body)
    ports = {name: address.port for name, address in server.addresses.items()}
    assert [(t["kind"], t["type"], int(t["port"]), t["socketType"]) for t in told] == [
        ("incomingServer", "imap", ports["imaps"], "SSL"),
        ("incomingServer", "imap", ports["imap"], "STARTTLS"),
        ("incomingServer", "pop3", ports["pop3s"], "SSL"),
        ("incomingServer", "pop3", ports["pop3"], "STARTTLS"),
        ("outgoingServer", "smtp", ports["submissions"], "SSL"),
        ("outgoingServer", "smtp", ports["submission"], "STARTTLS"),
    ]
    assert {t["hostname"] for t in told} == {"mail.example.com"}
    assert {t["authentication"] for t in told} == {"password-cleartext"}
    for entry in told:
        assert await asyncio.to_thread(log_in_as_told, server, entry), entry


async def test_thunderbird_gets_the_same_from_the_well_known_path_and_by_the_name_it_asked_for(server):
    _, _, first = await get(server, f"/mail/config-v1.1.xml?emailaddress={ADDRESS}")
    status, _, well_known = await get(server, f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={ADDRESS}")
    assert status == 200 and well_known == first
    status, _, by_name = await get(server, "/mail/config-v1.1.xml", host="autoconfig.EXAMPLE.com")
    assert status == 200 and by_name == first


@pytest.mark.parametrize(
    ("path", "host", "status", "says"),
    [
        ("/mail/config-v1.1.xml?emailaddress=bob@elsewhere.org", None, 404, b"elsewhere.org is not hosted here"),
        ("/mail/config-v1.1.xml?emailaddress=not-an-address", None, 400, b"is not a mail address"),
        ("/mail/config-v1.1.xml", None, 400, b"?emailaddress=name@domain"),
        ("/mail/config-v1.1.xml", "autoconfig.elsewhere.org", 404, b"not hosted here"),
        ("/apple/mobileconfig", None, 400, b"?emailaddress=name@domain"),
        ("/apple/mobileconfig?emailaddress=bob@elsewhere.org", None, 404, b"not hosted here"),
    ],
)
async def test_a_question_without_a_hosted_address_gets_a_clear_no(server, path, host, status, says):
    got, media, body = await get(server, path, host=host)
    assert (got, media.split(";")[0]) == (status, "text/plain")
    assert says in body


async def test_a_mailbox_that_does_not_exist_gets_the_domain_s_settings(server):
    # Whether an address exists is not told: the answer is the domain's.
    _, _, known = await get(server, f"/mail/config-v1.1.xml?emailaddress={ADDRESS}")
    status, _, unknown = await get(server, "/mail/config-v1.1.xml?emailaddress=nobody@example.com")
    assert status == 200 and unknown == known


async def test_outlook_is_told_one_door_per_protocol_with_the_address_as_login(server):
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        request = OUTLOOK_REQUEST.format("Alice@Example.com").encode()
        status, media, body = await asyncio.to_thread(fetch, server, "POST", path, request)
        assert status == 200 and media.startswith("application/xml")
        account = ET.fromstring(body).find(f"{OUTLOOK_NS}Response/{OUTLOOK_NS}Account")
        assert account.findtext(f"{OUTLOOK_NS}Action") == "settings"
        protocols = {
            p.findtext(f"{OUTLOOK_NS}Type"): {child.tag.removeprefix(OUTLOOK_NS): child.text for child in p}
            for p in account.findall(f"{OUTLOOK_NS}Protocol")
        }
        assert set(protocols) == {"IMAP", "POP3", "SMTP"}
        for kind, name in (("IMAP", "imaps"), ("POP3", "pop3s"), ("SMTP", "submissions")):
            assert protocols[kind]["Port"] == str(server.addresses[name].port)
            assert protocols[kind]["Server"] == "mail.example.com"
            assert protocols[kind]["LoginName"] == ADDRESS
            flags = (protocols[kind]["SSL"], protocols[kind]["SPA"], protocols[kind]["AuthRequired"])
            assert flags == ("on", "off", "on")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"<Autodiscover><Request>", 400, b"not well-formed XML"),
        (b"<Autodiscover><Request/></Autodiscover>", 400, b"names no EMailAddress"),
        (OUTLOOK_REQUEST.format("").encode(), 400, b"names no EMailAddress"),
        (OUTLOOK_REQUEST.format("no-at-sign").encode(), 400, b"is not a mail address"),
        (OUTLOOK_REQUEST.format("bob@elsewhere.org").encode(), 404, b"elsewhere.org is not hosted here"),
        (b"<x>" + b"a" * MAX_REQUEST_BYTES + b"</x>", 400, b"too large"),
        (b"<x>" + b"a" * (64 * MAX_REQUEST_BYTES) + b"</x>", 400, b"too large"),  # not read to its end
    ],
)
async def test_a_bad_autodiscover_request_gets_a_clear_no(server, body, status, says):
    got, _, answer = await asyncio.to_thread(fetch, server, "POST", "/autodiscover/autodiscover.xml", body)
    assert got == status and says in answer


async def test_an_iphone_gets_a_profile_with_imap_and_submission_over_tls(server):
    status, media, body = await get(server, f"/apple/mobileconfig?emailaddress={ADDRESS}")
    assert status == 200 and media == "application/x-apple-aspen-config"
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    [account] = profile["PayloadContent"]
    assert account["PayloadType"] == "com.apple.mail.managed"
    assert account["EmailAddress"] == account["IncomingMailServerUsername"] == ADDRESS
    assert (account["EmailAccountType"], account["IncomingMailServerPortNumber"]) == (
        "EmailTypeIMAP", server.addresses["imaps"].port
    )
    assert account["OutgoingMailServerPortNumber"] == server.addresses["submissions"].port
    assert account["IncomingMailServerUseSSL"] and account["OutgoingMailServerUseSSL"]
    assert not {"IncomingPassword", "OutgoingPassword"} & set(account)  # the device asks when installing
    _, _, again = await get(server, f"/apple/mobileconfig?emailaddress={ADDRESS}")
    assert plistlib.loads(again)["PayloadUUID"] == profile["PayloadUUID"]  # installed again: replaced


async def test_an_international_domain_is_named_as_people_write_it(server):
    await make_account(server.store, "jana@bücher.example")
    status, _, body = await get(server, "/mail/config-v1.1.xml?emailaddress=jana@b%C3%BCcher.example")
    provider = ET.fromstring(body).find("emailProvider")
    assert status == 200 and provider.get("id") == "xn--bcher-kva.example"
    assert provider.findtext("displayShortName") == "bücher.example"
