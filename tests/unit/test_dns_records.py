"""`postfach domain dns DOMAIN`: the records a domain publishes."""

import base64
import subprocess
import sys

import dkim
from cryptography.hazmat.primitives import serialization

from postfach import dkim_keys, dns_records
from postfach.config import ListenAddress
from postfach.model import DkimKey

KEY = DkimKey("a.test", "pf202601", dkim_keys.generate_private_key())


def test_records_name_mx_spf_dkim_dmarc_and_client_setup():
    listen = {"submission": ListenAddress("0.0.0.0", 587), "imaps": ListenAddress("0.0.0.0", 993),
              "pop3s": ListenAddress("0.0.0.0", 995)}
    lines = dns_records.records("a.test", "mail.example.net", KEY, listen)
    assert lines[0] == "a.test.\t3600\tIN\tMX\t10 mail.example.net."
    assert lines[1] == 'a.test.\t3600\tIN\tTXT\t"v=spf1 mx -all"'
    assert lines[2].startswith('pf202601._domainkey.a.test.\t3600\tIN\tTXT\t"v=DKIM1; k=rsa; p=')
    assert lines[3].startswith('_dmarc.a.test.\t3600\tIN\tTXT\t"v=DMARC1; p=quarantine;')
    assert "autoconfig.a.test.\t3600\tIN\tCNAME\tmail.example.net." in lines
    assert "autodiscover.a.test.\t3600\tIN\tCNAME\tmail.example.net." in lines
    assert "_submission._tcp.a.test.\t3600\tIN\tSRV\t0 1 587 mail.example.net." in lines
    assert "_imaps._tcp.a.test.\t3600\tIN\tSRV\t0 1 993 mail.example.net." in lines
    assert "_pop3s._tcp.a.test.\t3600\tIN\tSRV\t0 1 995 mail.example.net." in lines
    assert not any(line.startswith("_imap._tcp") for line in lines)  # no imap listener configured
    assert not any(line.startswith("_autodiscover._tcp") for line in lines)  # no http listener
    with_web = dns_records.records("a.test", "mail.example.net", KEY, {**listen, "http": ListenAddress("::", 443)})
    assert "_autodiscover._tcp.a.test.\t3600\tIN\tSRV\t0 1 443 mail.example.net." in with_web


def test_long_txt_values_are_split_into_255_character_strings():
    value = dkim_keys.public_record(KEY)
    quoted = dns_records.txt(value)
    parts = [part.strip('"') for part in quoted.split('" "')]
    assert all(len(part) <= 255 for part in parts) and "".join(parts) == value


def test_the_published_key_verifies_what_the_private_key_signs():
    message = b"From: alice@a.test\r\nTo: bob@b.test\r\nSubject: x\r\n\r\nbody\r\n"
    signed = dkim_keys.sign(message, KEY) + message
    record = dkim_keys.public_record(KEY).encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    der = base64.b64decode(record.split(b"p=")[1])
    assert serialization.load_der_public_key(der).key_size == 2048


def test_cli_prints_the_records_and_makes_the_key_when_the_domain_is_added(tmp_path):
    config = tmp_path / "postfach.toml"
    config.write_text('data_dir = "data"\nhostname = "mail.example.net"\n[listen]\nsubmission = "0.0.0.0:587"\n')

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "postfach", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60)

    assert cli("domain", "add", "a.test").returncode == 0
    first, again = cli("domain", "dns", "a.test"), cli("domain", "dns", "a.test")
    assert first.returncode == 0 and first.stdout == again.stdout  # one key, kept
    assert "._domainkey.a.test.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=" in first.stdout
    assert "_submission._tcp.a.test.\t3600\tIN\tSRV\t0 1 587 mail.example.net." in first.stdout
    missing = cli("domain", "dns", "b.test")
    assert missing.returncode == 1 and missing.stderr == "postfach: the domain b.test is not hosted here\n"
