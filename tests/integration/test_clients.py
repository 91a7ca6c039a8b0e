"""Real mail clients nobody on the team wrote, against a real `postfach serve`, with STRICT=1.

The harness lives in ../shared/clients (scripts/test installs the clients it
drives). Every script prints one PASS/FAIL line per check and ends with
"N passed, M failed"; STRICT=1 counts a check for a feature Postfach does not
offer as a failure.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.config import write_config
from tests.support.server import ServeProcess

CLIENTS = Path(__file__).resolve().parents[3] / "shared" / "clients"
PASSWORDS = {
    "user1@clients.example": "first client password",
    "user2@clients.example": "second client password",
    "badauth@clients.example": "third client password",
}
# Each script needs a fresh pair of accounts: a server per script keeps them apart.
# Each script's checks (its README gives the rough numbers); fewer means something was not run.
MINIMUM_CHECKS = {"fetchmail": 55, "swaks": 40, "imap-clients": 80, "mutt": 30, "mbsync": 45, "offlineimap": 45}
SCRIPTS = ["fetchmail", "swaks", "imap-clients", "mutt", "mbsync", "offlineimap"]


@pytest.fixture
def postfach(tmp_path):
    assert CLIENTS.is_dir(), f"the client harness is missing: {CLIENTS}"
    config = write_config(tmp_path)
    _cli(config, "domain", "add", "clients.example")
    for address, password in PASSWORDS.items():
        _cli(config, "mailbox", "add", address, "--password-stdin", stdin=password)
    server = ServeProcess(["--config", str(config)])
    try:
        yield server
    finally:
        server.stop(signal.SIGTERM)


def _cli(config: Path, *args: str, stdin: str = "") -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postfach", *args, "--config", str(config)],
        input=stdin, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", SCRIPTS)
def test_client_harness(postfach, script, tmp_path):
    addresses = postfach.addresses
    users = list(PASSWORDS)
    environment = {
        **os.environ,
        "STRICT": "1",
        "MAIL_HOST": "127.0.0.1",
        "IMAP_PORT": str(addresses["imap"].port),
        "IMAPS_PORT": str(addresses["imaps"].port),
        "POP3_PORT": str(addresses["pop3"].port),
        "POP3S_PORT": str(addresses["pop3s"].port),
        "SMTP_PORT": str(addresses["smtp"].port),
        "SUBMISSION_PORT": str(addresses["submission"].port),
        "SUBMISSIONS_PORT": str(addresses["submissions"].port),
        "USER1": users[0],
        "PASS1": PASSWORDS[users[0]],
        "USER2": users[1],
        "PASS2": PASSWORDS[users[1]],
        "BADAUTH_USER": users[2],
        "HARNESS_TMP": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(CLIENTS / f"{script}.sh")], env=environment, capture_output=True, text=True, timeout=570
    )
    lines = result.stdout.strip().splitlines()
    failures = [line for line in lines if line.startswith(("FAIL", "SKIP"))]
    assert result.returncode == 0 and lines and lines[-1].endswith(" 0 failed"), (
        "\n".join(failures) or result.stdout[-3000:]
    ) + "\n" + result.stderr[-2000:]
    print(f"{script}: {lines[-1]}")
    # A script that silently ran fewer checks than it has is no pass.
    assert int(lines[-1].split()[0]) >= MINIMUM_CHECKS[script]
