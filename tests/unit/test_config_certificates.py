"""config.py: [tls.certificates."domain"], a certificate per SNI name, checked like tls.cert and tls.key."""

from __future__ import annotations

from pathlib import Path

import pytest

from postfach.config import CertificatePair, ConfigError, load_config
from tests.support.tls import encrypted_key, write_certificate


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "postfach.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'data_dir = "{tmp_path / "data"}"\nhostname = "mail.example.test"\n{text}', encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    return info.value.problems


def entry(name: str, cert: Path | str, key: Path | str) -> str:
    return f'[tls.certificates."{name}"]\ncert = "{cert}"\nkey = "{key}"\n'


@pytest.fixture
def pairs(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Three good pairs: etc/certs/{a,b,c}-cert.pem and -key.pem."""
    made = {}
    for stem in ("a", "b", "c"):
        cert, key = tmp_path / "etc" / "certs" / f"{stem}-cert.pem", tmp_path / "etc" / "certs" / f"{stem}-key.pem"
        write_certificate(cert, key, stem)
        made[stem] = cert, key
    return made


def test_no_table_means_no_domain_certificates(tmp_path):
    config = load_config(write_config(tmp_path, ""), {})
    assert dict(config.tls_certificates) == {}


def test_names_are_normalised_and_relative_paths_start_at_the_file(tmp_path, pairs):
    path = write_config(
        tmp_path,
        entry("Mail.Example.ORG.", "certs/a-cert.pem", "certs/a-key.pem")
        + entry("*.Example.NET", *pairs["b"])
        + entry("bücher.example", *pairs["c"]),
    )
    config = load_config(path, {})
    assert dict(config.tls_certificates) == {
        "mail.example.org": CertificatePair(*pairs["a"]),
        "*.example.net": CertificatePair(*pairs["b"]),
        "xn--bcher-kva.example": CertificatePair(*pairs["c"]),
    }
    assert config.tls_cert is None  # the default stays the self-signed pair


def test_inline_tables_are_the_same_table(tmp_path, pairs):
    cert, key = pairs["a"]
    path = write_config(tmp_path, f'[tls.certificates]\n"mail.example.org" = {{ cert = "{cert}", key = "{key}" }}\n')
    assert dict(load_config(path, {}).tls_certificates) == {"mail.example.org": CertificatePair(cert, key)}


def test_a_misspelt_key_in_tls_suggests_certificates(tmp_path):
    path = write_config(tmp_path, '[tls]\ncertificate = "x"\n')
    assert problems_of(path) == [
        f'{path}: unknown key "tls.certificate" in [tls] (did you mean "tls.certificates"?)'
    ]


# (entry given the tmp_path and the pairs, the problem after "<file>: tls.certificates: ")
MISTAKES = {
    "certificate file missing": (
        lambda t, p: entry("mail.example.org", t / "nowhere.pem", p["a"][1]),
        lambda t, p: f'"mail.example.org": certificate file "{t / "nowhere.pem"}" cannot be read: '
        "no such file or directory",
    ),
    "key file unreadable": (
        lambda t, p: entry("mail.example.org", p["a"][0], t),
        lambda t, p: f'"mail.example.org": key file "{t}" cannot be read: is a directory',
    ),
    "key of another certificate": (
        lambda t, p: entry("mail.example.org", p["a"][0], p["b"][1]),
        lambda t, p: f'"mail.example.org": certificate "{p["a"][0]}" and key "{p["b"][1]}" '
        "do not load together (key values mismatch)",
    ),
    "certificate is the key": (
        lambda t, p: entry("mail.example.org", p["a"][1], p["a"][1]),
        lambda t, p: f'"mail.example.org": certificate file "{p["a"][1]}" holds no PEM certificate',
    ),
    "key is the certificate": (
        lambda t, p: entry("mail.example.org", p["a"][0], p["a"][0]),
        lambda t, p: f'"mail.example.org": key file "{p["a"][0]}" holds no PEM key',
    ),
    "encrypted key": (
        lambda t, p: (encrypted_key(t / "locked.pem"), entry("mail.example.org", p["a"][0], t / "locked.pem"))[1],
        lambda t, p: f'"mail.example.org": certificate "{p["a"][0]}" and key "{t / "locked.pem"}" do not load '
        "together (the key is encrypted; postfach needs an unencrypted key)",
    ),
    "not a DNS name": (
        lambda t, p: entry("mail_1.example.org", *p["a"]),
        lambda t, p: '"mail_1.example.org" is not a valid DNS name '
        '(label "mail_1" has characters other than letters, digits and hyphens)',
    ),
    "wildcard inside a label": (
        lambda t, p: entry("mail*.example.org", *p["a"]),
        lambda t, p: '"mail*.example.org": a wildcard must be the whole first label, as in "*.example.org"',
    ),
    "wildcard not first": (
        lambda t, p: entry("mail.*.example.org", *p["a"]),
        lambda t, p: '"mail.*.example.org": a wildcard must be the whole first label, as in "*.example.org"',
    ),
    "two wildcards": (
        lambda t, p: entry("*.*.example.org", *p["a"]),
        lambda t, p: '"*.*.example.org": a wildcard must be the whole first label, as in "*.example.org"',
    ),
    "wildcard for a top-level domain": (
        lambda t, p: entry("*.org", *p["a"]),
        lambda t, p: '"*.org": a wildcard needs at least two labels after "*."',
    ),
    "entry is no table": (
        lambda t, p: '[tls.certificates]\n"mail.example.org" = "/etc/cert.pem"\n',
        lambda t, p: '"mail.example.org" must be a table with cert and key, got a string "/etc/cert.pem"',
    ),
    "key not set": (
        lambda t, p: f'[tls.certificates."mail.example.org"]\ncert = "{p["a"][0]}"\n',
        lambda t, p: '"mail.example.org": key is not set',
    ),
    "cert not a string": (
        lambda t, p: f'[tls.certificates."mail.example.org"]\ncert = 5\nkey = "{p["a"][1]}"\n',
        lambda t, p: '"mail.example.org": cert: expected a string, got an integer 5',
    ),
    "cert empty": (
        lambda t, p: entry("mail.example.org", "", p["a"][1]),
        lambda t, p: '"mail.example.org": cert must not be empty',
    ),
    "unknown key": (
        lambda t, p: entry("mail.example.org", *p["a"]) + 'chain = "x"\n',
        lambda t, p: '"mail.example.org": unknown key "chain" (known: "cert", "key")',
    ),
    "the same name twice": (
        lambda t, p: entry("mail.example.org", *p["a"]) + entry("MAIL.example.org.", *p["b"]),
        lambda t, p: '"MAIL.example.org." names the same domain as "mail.example.org"',
    ),
    "the same IDN twice": (
        lambda t, p: entry("bücher.example", *p["a"]) + entry("xn--bcher-kva.example", *p["b"]),
        lambda t, p: '"xn--bcher-kva.example" names the same domain as "bücher.example"',
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_is_one_sentence(tmp_path, pairs, mistake):
    text, problem = MISTAKES[mistake]
    path = write_config(tmp_path, text(tmp_path, pairs))
    assert problems_of(path) == [f"{path}: tls.certificates: {problem(tmp_path, pairs)}"]


def test_table_that_is_no_table(tmp_path):
    path = write_config(tmp_path, '[tls]\ncertificates = "/etc/cert.pem"\n')
    assert problems_of(path) == [f'{path}: tls.certificates: expected a table, got a string "/etc/cert.pem"']


def test_both_files_missing_is_two_sentences(tmp_path):
    path = write_config(tmp_path, entry("mail.example.org", "cert.pem", "key.pem"))
    etc = path.parent
    assert problems_of(path) == [
        (
            f'{path}: tls.certificates: "mail.example.org": certificate file "{etc}/cert.pem" cannot be read: '
            "no such file or directory"
        ),
        (
            f'{path}: tls.certificates: "mail.example.org": key file "{etc}/key.pem" cannot be read: '
            "no such file or directory"
        ),
    ]


def test_every_mistake_in_every_entry_is_reported_with_the_others(tmp_path, pairs):
    path = write_config(
        tmp_path,
        f'[listen]\nimap = 143\n[tls]\ncert = "{pairs["a"][0]}"\nkey = "{pairs["b"][1]}"\n'
        + entry("mail.example.org", *pairs["a"])  # good: no sentence
        + entry("*.org", *pairs["a"])
        + entry("b.example.org", pairs["b"][0], pairs["c"][1])
        + f'[tls.certificates."c.example.org"]\ncert = "{pairs["c"][0]}"\n',
    )
    origin = f"{path}: tls.certificates"
    assert sorted(problems_of(path)) == sorted(
        [
            f'{path}: listen.imap: expected a string like "host:port", got an integer 143',
            f'{origin}: "*.org": a wildcard needs at least two labels after "*."',
            (
                f'{origin}: "b.example.org": certificate "{pairs["b"][0]}" and key "{pairs["c"][1]}" '
                "do not load together (key values mismatch)"
            ),
            f'{origin}: "c.example.org": key is not set',
            (
                f'{path}: tls.cert: certificate "{pairs["a"][0]}" and key "{pairs["b"][1]}" '
                "do not load together (key values mismatch)"
            ),
        ]
    )


def test_no_environment_variable_sets_it(tmp_path):
    path = write_config(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"POSTFACH_TLS_CERTIFICATES": "x"})
    [problem] = info.value.problems
    assert problem.startswith("unknown environment variable POSTFACH_TLS_CERTIFICATES")
