"""Every TLS door, scanned by an outside tool (Debian's testssl.sh): TLS 1.2 and 1.3 only, every
accepted cipher suite with forward secrecy (issue 6 point 5)."""

import asyncio
import json
import shutil
import subprocess

import pytest

from tests.support.config import make_config
from tests.support.server import running_server

# listener -> testssl's STARTTLS protocol (None: TLS from the first byte)
DOORS = {
    "imaps": None,
    "pop3s": None,
    "submissions": None,
    "http": None,
    "imap": "imap",
    "pop3": "pop3",
    "submission": "smtp",
}
OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")


def scan(port: int, starttls: str | None, report) -> list[dict]:
    command = [shutil.which("testssl") or "testssl", "--quiet", "--color", "0", "--warnings", "off",
               "--protocols", "--cipher-per-proto", "--jsonfile", str(report)]
    if starttls:
        command += ["--starttls", starttls]
    subprocess.run([*command, f"127.0.0.1:{port}"], capture_output=True, timeout=180, check=False)
    return json.loads(report.read_text())


@pytest.mark.timeout(600)
async def test_every_tls_door_offers_only_modern_forward_secret_tls(tmp_path):
    assert shutil.which("testssl"), "testssl.sh is missing (scripts/test installs Debian's testssl.sh)"
    async with running_server(make_config(tmp_path, listeners=tuple(DOORS))) as server:
        for name, starttls in DOORS.items():
            findings = await asyncio.to_thread(
                scan, server.addresses[name].port, starttls, tmp_path / f"{name}.json"
            )
            by_id = {finding["id"]: finding["finding"] for finding in findings}
            for protocol in OLD_PROTOCOLS:
                assert by_id.get(protocol, "").startswith("not offered"), (name, protocol, by_id.get(protocol))
            assert by_id.get("TLS1_2", "").startswith("offered"), (name, by_id.get("TLS1_2"))
            assert by_id.get("TLS1_3", "").startswith("offered"), (name, by_id.get("TLS1_3"))
            ciphers = [text for key, text in by_id.items() if key.startswith("cipher-tls")]
            assert ciphers, (name, "no cipher suite seen")
            for text in ciphers:
                # testssl's row: "TLS 1.2  xc02f  ECDHE-RSA-AES128-GCM-SHA256  ECDH 253  AESGCM ..."
                assert " ECDH " in f" {text} " or " DH " in f" {text} ", (name, text)
