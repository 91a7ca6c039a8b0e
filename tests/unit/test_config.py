"""config.py: the embedded default, the file, the environment, and one sentence per mistake."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from postfach.config import (
    DEFAULT_PORTS,
    LISTENER_NAMES,
    TABLES,
    Config,
    ConfigError,
    ListenAddress,
    find_config_file,
    load_config,
)
from postfach.tls import write_self_signed_certificate


def write_config(directory: Path, text: str, name: str = "postfach.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "certs" / "cert.pem", tmp_path / "certs" / "key.pem"
    cert.parent.mkdir()
    write_self_signed_certificate("mail.example.test", cert, key)
    return cert, key


@pytest.fixture
def other_pair(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "other" / "cert.pem", tmp_path / "other" / "key.pem"
    cert.parent.mkdir()
    write_self_signed_certificate("mail.example.test", cert, key)
    return cert, key


# --- the embedded default -----------------------------------------------------


def test_embedded_default_starts_every_listener_on_the_default_ports(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {})

    assert list(config.listen) == list(LISTENER_NAMES)
    assert {name: (a.host, a.port) for name, a in config.listen.items()} == {
        "imap": ("0.0.0.0", 1143),
        "imaps": ("0.0.0.0", 1993),
        "pop3": ("0.0.0.0", 1110),
        "pop3s": ("0.0.0.0", 1995),
        "smtp": ("0.0.0.0", 2525),
        "submission": ("0.0.0.0", 1587),
        "submissions": ("0.0.0.0", 1465),
        "http": ("0.0.0.0", 8443),
    }
    data = Path.cwd() / "data"
    assert config.data_dir == data and data.is_dir()
    assert config.store_url == f"sqlite://{data}/postfach.sqlite3"
    assert config.db_path == data / "postfach.sqlite3"
    assert config.blob_dir == data / "blobs"
    assert config.tls_dir == data / "tls"
    assert config.tls_cert is None and config.tls_key is None
    assert config.config_file is None
    assert config.hostname  # getfqdn(), or "localhost", never empty


def test_config_is_frozen_and_listen_is_read_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hostname = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.listen["imap"] = ListenAddress("127.0.0.1", 1)  # type: ignore[index]


def test_listen_address_text():
    assert str(ListenAddress("127.0.0.1", 143)) == "127.0.0.1:143"
    assert str(ListenAddress("::1", 143)) == "[::1]:143"
    assert str(ListenAddress("mail.example.test", 0)) == "mail.example.test:0"


def test_default_environ_is_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTFACH_HOSTNAME", "from-env.example.test")
    assert load_config(None).hostname == "from-env.example.test"
    monkeypatch.setenv("POSTFACH_BOGUS", "1")
    with pytest.raises(ConfigError):
        load_config(None)


# --- the file -----------------------------------------------------------------


def test_file_starts_only_the_listeners_it_names(tmp_path):
    path = write_config(
        tmp_path,
        """
        hostname = "Mail.Example.TEST."
        [listen]
        imap = "127.0.0.1:0"
        smtp = "[::1]:2525"
        """,
    )
    config = load_config(path, {})
    assert dict(config.listen) == {
        "imap": ListenAddress("127.0.0.1", 0),
        "smtp": ListenAddress("::1", 2525),
    }
    assert config.hostname == "mail.example.test"
    assert config.config_file == path


def test_file_without_listen_table_starts_no_listener(tmp_path):
    assert dict(load_config(write_config(tmp_path, 'hostname = "mail.example.test"\n'), {}).listen) == {}


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch, pair):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (tmp_path / "etc" / "certs").mkdir(parents=True)
    for source in pair:
        (tmp_path / "etc" / "certs" / source.name).write_bytes(source.read_bytes())
    path = write_config(
        tmp_path / "etc",
        """
        data_dir = "../var/mail"
        [tls]
        cert = "certs/cert.pem"
        key = "certs/key.pem"
        [store]
        url = "sqlite:db/meta.sqlite3"
        """,
    )
    config = load_config(path, {})
    assert config.data_dir == tmp_path / "var" / "mail"
    assert config.data_dir.is_dir()
    assert config.tls_cert == tmp_path / "etc" / "certs" / "cert.pem"
    assert config.tls_key == tmp_path / "etc" / "certs" / "key.pem"
    assert config.store_url == f"sqlite://{tmp_path}/etc/db/meta.sqlite3"
    assert config.db_path == tmp_path / "etc" / "db" / "meta.sqlite3"


def test_data_dir_defaults_to_data_beside_the_config_file(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write_config(tmp_path / "etc", ""), {})
    assert config.data_dir == tmp_path / "etc" / "data"
    assert config.store_url == f"sqlite://{tmp_path}/etc/data/postfach.sqlite3"


def test_relative_config_path_becomes_absolute(tmp_path, monkeypatch):
    write_config(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("postfach.toml"), {})
    assert config.config_file == tmp_path / "postfach.toml"
    assert config.data_dir == tmp_path / "data"


def test_absolute_sqlite_url_is_kept(tmp_path):
    db = tmp_path / "abs" / "x.sqlite3"
    config = load_config(write_config(tmp_path, f'[store]\nurl = "sqlite://{db}"\n'), {})
    assert config.store_url == f"sqlite://{db}"
    assert config.store_url.startswith("sqlite:///")
    assert config.db_path == db


def test_unicode_hostname_is_held_as_punycode(tmp_path):
    config = load_config(write_config(tmp_path, 'hostname = "mail.bücher.example"\n'), {})
    assert config.hostname == "mail.xn--bcher-kva.example"


# --- the environment ----------------------------------------------------------


def test_environment_overrides_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(
        None,
        {
            "POSTFACH_LISTEN_IMAP": "127.0.0.1:0",
            "POSTFACH_LISTEN_POP3": "",
            "POSTFACH_LISTEN_POP3S": "",
            "POSTFACH_DATA_DIR": "elsewhere/data",
            "POSTFACH_HOSTNAME": "mx.example.test",
            "POSTFACH_STORE_URL": "sqlite:meta.sqlite3",
            "HOME": "/not/ours",  # not POSTFACH_: ignored
        },
    )
    assert config.listen["imap"] == ListenAddress("127.0.0.1", 0)
    assert "pop3" not in config.listen and "pop3s" not in config.listen
    assert config.listen["smtp"] == ListenAddress("0.0.0.0", DEFAULT_PORTS["smtp"])
    assert len(config.listen) == 6
    # relative paths in the environment are relative to the working directory
    assert config.data_dir == tmp_path / "elsewhere" / "data"
    assert config.store_url == f"sqlite://{tmp_path}/meta.sqlite3"
    assert config.hostname == "mx.example.test"


def test_environment_overrides_the_file(tmp_path, pair):
    cert, key = pair
    path = write_config(
        tmp_path / "etc",
        """
        hostname = "file.example.test"
        [listen]
        imap = "127.0.0.1:1143"
        pop3 = "127.0.0.1:1110"
        """,
    )
    config = load_config(
        path,
        {
            "POSTFACH_HOSTNAME": "env.example.test",
            "POSTFACH_LISTEN_IMAP": "127.0.0.1:0",
            "POSTFACH_LISTEN_POP3": "",
            "POSTFACH_LISTEN_HTTP": "[::1]:0",
            "POSTFACH_TLS_CERT": str(cert),
            "POSTFACH_TLS_KEY": str(key),
            "POSTFACH_CONFIG": "/ignored/here.toml",
        },
    )
    assert config.hostname == "env.example.test"
    assert dict(config.listen) == {"imap": ListenAddress("127.0.0.1", 0), "http": ListenAddress("::1", 0)}
    assert (config.tls_cert, config.tls_key) == (cert, key)


def test_unknown_postfach_variable_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = problems_of(None, {"POSTFACH_FOO": "1", "POSTFACH_LISTEN_IMAPX": "127.0.0.1:0"})
    assert problems[0].startswith("unknown environment variable POSTFACH_FOO (")
    assert problems[1] == (
        "unknown environment variable POSTFACH_LISTEN_IMAPX (did you mean POSTFACH_LISTEN_IMAP?)"
    )


def test_bad_environment_value_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems_of(None, {"POSTFACH_LISTEN_IMAP": "127.0.0.1"}) == [
        'POSTFACH_LISTEN_IMAP: "127.0.0.1" is not a valid host:port (port missing)'
    ]
    assert problems_of(None, {"POSTFACH_HOSTNAME": ""}) == ["POSTFACH_HOSTNAME: must not be empty"]


def test_file_mistake_is_reported_even_when_the_environment_overrides_it(tmp_path):
    path = write_config(tmp_path, '[listen]\nimap = "127.0.0.1"\npop3 = 110\n')
    environ = {"POSTFACH_LISTEN_IMAP": "127.0.0.1:0", "POSTFACH_LISTEN_POP3": "127.0.0.1:0"}
    assert problems_of(path, environ) == [
        f'{path}: listen.pop3: expected a string like "host:port", got an integer 110',
        f'{path}: listen.imap: "127.0.0.1" is not a valid host:port (port missing)',
    ]


# --- find_config_file ---------------------------------------------------------


def test_find_config_file_precedence():
    environ = {"POSTFACH_CONFIG": "/etc/from-env.toml"}
    assert find_config_file("/etc/from-cli.toml", environ) == Path("/etc/from-cli.toml")
    assert find_config_file(None, environ) == Path("/etc/from-env.toml")
    assert find_config_file(None, {}) is None
    assert find_config_file(None, {"POSTFACH_CONFIG": ""}) is None


# --- one sentence per mistake -------------------------------------------------

# Every table the settings name, as the "known:" hints list them (they grow as settings are added).
KNOWN_TABLES = ", ".join(f"[{table}]" for table in TABLES)
KNOWN_TOP_LEVEL_TABLES = ", ".join(f'"{table}"' for table in TABLES)
assert {"auth", "listen", "pop3", "store", "tls"} <= set(TABLES)

BAD_LISTEN = [
    ("127.0.0.1:99999", "port must be 0 to 65535"),
    ("127.0.0.1:-1", "port must be a number"),
    ("127.0.0.1:abc", "port must be a number"),
    ("127.0.0.1", "port missing"),
    ("127.0.0.1:", "port missing"),
    (":143", "host missing"),
    ("::1:143", "IPv6 addresses must be in brackets, e.g. [::1]:143"),
    ("[::1:143", "missing closing bracket"),
    ("[::1]143", "expected ':' after the closing bracket"),
    ("[::1]", "port missing"),
    ("[127.0.0.1]:143", '"127.0.0.1" in brackets is not an IPv6 address'),
    ("999.0.0.1:143", '"999.0.0.1" is not an IPv4 address'),
    ("bad_host:143", '"bad_host" is not an IP address or DNS name'),
    ("", "port missing"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_LISTEN)
def test_bad_host_port(tmp_path, value, reason):
    path = write_config(tmp_path, f'[listen]\nimap = "{value}"\n')
    assert problems_of(path) == [f'{path}: listen.imap: "{value}" is not a valid host:port ({reason})']


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('datadir = "x"\n', 'unknown key "datadir" (did you mean "data_dir"?)'),
        ("[listen]\nimapx = \"127.0.0.1:0\"\n", 'unknown key "listen.imapx" in [listen] (did you mean "listen.imap"?)'),
        ("[tlss]\ncert = \"x\"\n", "unknown table [tlss] (did you mean [tls]?)"),
        ("[limits]\nmax = 1\n", f"unknown table [limits] (known: {KNOWN_TABLES})"),
        ("[listen]\nimap = 143\n", 'listen.imap: expected a string like "host:port", got an integer 143'),
        ('listen = "127.0.0.1:0"\n', 'listen: expected a table, got a string "127.0.0.1:0"'),
        ("hostname = true\n", "hostname: expected a string, got a boolean true"),
        ("[hostname]\nx = 1\n", "hostname: expected a string, got a table"),
        ('hostname = ""\n', "hostname: must not be empty"),
        (
            'hostname = "mail_1.example.test"\n',
            'hostname: "mail_1.example.test" is not a valid DNS name '
            '(label "mail_1" has characters other than letters, digits and hyphens)',
        ),
        (
            'hostname = "-mail.example.test"\n',
            'hostname: "-mail.example.test" is not a valid DNS name (label "-mail" starts or ends with a hyphen)',
        ),
        ('hostname = "mail..test"\n', 'hostname: "mail..test" is not a valid DNS name (empty label)'),
        ('hostname = "10.0.0.1"\n', 'hostname: "10.0.0.1" is not a valid DNS name (the last label is all digits)'),
        ('data_dir = ""\n', "data_dir: must not be empty"),
        ('[store]\nurl = "postgresql://u:hunter2@db/postfach"\n', "store.url: postgresql: store URLs are not supported yet"),
        ('[store]\nurl = "postgres://db/postfach"\n', "store.url: postgresql: store URLs are not supported yet"),
        ('[store]\nurl = "mysql://db/postfach"\n', 'store.url: unknown store URL scheme "mysql" (supported: sqlite)'),
        (
            '[store]\nurl = "postfach.sqlite3"\n',
            'store.url: "postfach.sqlite3" is not a store URL (expected e.g. sqlite:///var/lib/postfach/postfach.sqlite3)',
        ),
        ('[store]\nurl = "sqlite:"\n', 'store.url: "sqlite:" names no database file'),
        (
            '[store]\nurl = "sqlite://dbhost/x.sqlite3"\n',
            'store.url: "sqlite://dbhost/x.sqlite3" names a host; use sqlite:///absolute/path or sqlite:relative/path',
        ),
    ],
)
def test_file_mistakes(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path) == [f"{path}: {problem}"]


def test_secret_in_store_url_is_not_repeated(tmp_path):
    path = write_config(tmp_path, '[store]\nurl = "postgresql://u:hunter2@db/postfach"\n')
    assert "hunter2" not in "\n".join(problems_of(path))


def test_toml_syntax_error_gives_the_line(tmp_path):
    path = write_config(tmp_path, 'hostname = "mail.example.test"\n[listen]\nimap = \n')
    assert problems_of(path) == [f"{path}: not valid TOML: invalid value (at line 3, column 8)"]


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "postfach.toml"
    path.write_bytes(b'hostname = "m\xffil"\n')
    assert problems_of(path) == [f"{path}: the config file is not valid UTF-8 (byte 0xff at offset 13)"]


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.toml"
    assert problems_of(path) == [f"{path}: cannot read the config file: no such file or directory"]


def test_unreadable_config_file(tmp_path):
    # A directory cannot be read as a file, whoever we run as (root ignores mode bits).
    path = tmp_path / "dir.toml"
    path.mkdir()
    assert problems_of(path) == [f"{path}: cannot read the config file: is a directory"]


def test_file_problem_still_reports_environment_problems(tmp_path):
    path = tmp_path / "nope.toml"
    assert problems_of(path, {"POSTFACH_FOO": "1", "POSTFACH_LISTEN_IMAP": "x"}) == [
        f"{path}: cannot read the config file: no such file or directory",
        "unknown environment variable POSTFACH_FOO (did you mean POSTFACH_CONFIG?)",
        'POSTFACH_LISTEN_IMAP: "x" is not a valid host:port (port missing)',
    ]


# --- listeners sharing an address ---------------------------------------------


def test_two_listeners_on_the_same_address(tmp_path):
    path = write_config(tmp_path, '[listen]\nimap = "127.0.0.1:1143"\npop3 = "127.0.0.1:1143"\n')
    assert problems_of(path) == [f'{path}: listen.pop3: "127.0.0.1:1143" clashes with the imap listener ("127.0.0.1:1143")']


def test_wildcard_clashes_with_a_specific_address_of_its_family(tmp_path):
    path = write_config(tmp_path, '[listen]\nimap = "127.0.0.1:1143"\nsmtp = "0.0.0.0:1143"\nhttp = "[::]:1143"\n')
    assert problems_of(path) == [f'{path}: listen.smtp: "0.0.0.0:1143" clashes with the imap listener ("127.0.0.1:1143")']


def test_environment_listener_clashes_with_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert problems_of(None, {"POSTFACH_LISTEN_HTTP": "127.0.0.1:1143"}) == [
        'POSTFACH_LISTEN_HTTP: "127.0.0.1:1143" clashes with the imap listener ("0.0.0.0:1143")'
    ]


def test_port_zero_may_be_shared(tmp_path):
    text = "[listen]\n" + "".join(f'{name} = "127.0.0.1:0"\n' for name in LISTENER_NAMES)
    config = load_config(write_config(tmp_path, text), {})
    assert len(config.listen) == 8
    assert all(address == ListenAddress("127.0.0.1", 0) for address in config.listen.values())


# --- TLS files ----------------------------------------------------------------


def test_cert_without_key(tmp_path, pair):
    path = write_config(tmp_path / "etc", f'[tls]\ncert = "{pair[0]}"\n')
    assert problems_of(path) == [
        f"{path}: tls.cert: a certificate is set without a key; set tls.key or POSTFACH_TLS_KEY too"
    ]


def test_key_without_cert(tmp_path, pair):
    path = write_config(tmp_path / "etc", f'[tls]\nkey = "{pair[1]}"\n')
    assert problems_of(path) == [
        f"{path}: tls.key: a key is set without a certificate; set tls.cert or POSTFACH_TLS_CERT too"
    ]


def test_environment_can_clear_half_the_pair(tmp_path, pair):
    path = write_config(tmp_path / "etc", f'[tls]\ncert = "{pair[0]}"\nkey = "{pair[1]}"\n')
    assert problems_of(path, {"POSTFACH_TLS_KEY": ""}) == [
        f"{path}: tls.cert: a certificate is set without a key; set tls.key or POSTFACH_TLS_KEY too"
    ]
    config = load_config(path, {"POSTFACH_TLS_KEY": "", "POSTFACH_TLS_CERT": ""})
    assert config.tls_cert is None and config.tls_key is None


def test_cert_and_key_files_missing_or_unreadable(tmp_path):
    (tmp_path / "etc" / "key.pem").mkdir(parents=True)
    path = write_config(tmp_path / "etc", '[tls]\ncert = "cert.pem"\nkey = "key.pem"\n')
    etc = tmp_path / "etc"
    assert problems_of(path) == [
        f'{path}: tls.cert: certificate file "{etc}/cert.pem" cannot be read: no such file or directory',
        f'{path}: tls.key: key file "{etc}/key.pem" cannot be read: is a directory',
    ]


def test_cert_and_key_that_do_not_belong_together(tmp_path, pair, other_pair):
    path = write_config(tmp_path / "etc", f'[tls]\ncert = "{pair[0]}"\nkey = "{other_pair[1]}"\n')
    assert problems_of(path) == [
        f'{path}: tls.cert: certificate "{pair[0]}" and key "{other_pair[1]}" do not load together (key values mismatch)'
    ]


def test_cert_that_is_not_a_certificate(tmp_path, pair):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    path = write_config(tmp_path / "etc", f'[tls]\ncert = "{garbage}"\nkey = "{pair[1]}"\n')
    assert problems_of(path) == [f'{path}: tls.cert: certificate file "{garbage}" holds no PEM certificate']


def test_encrypted_key_is_named(tmp_path, pair):
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(pair[1].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
    path = write_config(tmp_path / "etc", f'[tls]\ncert = "{pair[0]}"\nkey = "{encrypted}"\n')
    assert problems_of(path) == [
        f'{path}: tls.cert: certificate "{pair[0]}" and key "{encrypted}" do not load together '
        "(the key is encrypted; postfach needs an unencrypted key)"
    ]


# --- the data directory -------------------------------------------------------


def test_data_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    path = write_config(tmp_path, 'data_dir = "file/data"\n')
    assert problems_of(path) == [f'{path}: data_dir: cannot create the data directory "{tmp_path}/file/data": not a directory']


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    path = write_config(tmp_path, 'data_dir = "file"\n')
    assert problems_of(path) == [f'{path}: data_dir: the data directory "{tmp_path}/file" is not a directory']


def test_data_dir_that_is_not_writable(tmp_path):
    # /proc refuses new files even to root, for whom mode bits are no obstacle.
    assert problems_of(None, {"POSTFACH_DATA_DIR": "/proc"})[0].startswith(
        'POSTFACH_DATA_DIR: the data directory "/proc" is not writable: '
    )


def test_default_data_dir_problem_names_the_default(tmp_path, monkeypatch):
    (tmp_path / "data").write_text("")
    monkeypatch.chdir(tmp_path)
    assert problems_of(None) == [f'data_dir (default): the data directory "{tmp_path}/data" is not a directory']


def test_nothing_half_done_is_left_behind(tmp_path):
    path = write_config(tmp_path, 'data_dir = "new/deeper/data"\nhostname = "bad_name"\n')
    problems_of(path)
    assert not (tmp_path / "new").exists()


# --- all at once --------------------------------------------------------------


def test_every_problem_is_reported(tmp_path, pair):
    path = write_config(
        tmp_path / "etc",
        f"""
        hostname = "mail_1.example"
        colour = "blue"
        [listen]
        imap = "127.0.0.1:99999"
        pop3 = 110
        smtp = "127.0.0.1:2525"
        submission = "127.0.0.1:2525"
        [tls]
        cert = "{pair[0]}"
        [store]
        url = "postgresql://db/postfach"
        """,
    )
    problems = problems_of(path, {"POSTFACH_FOO": "bar"})
    assert problems == [
        f'{path}: unknown key "colour" (known: "data_dir", "hostname", "workers", {KNOWN_TOP_LEVEL_TABLES})',
        f'{path}: listen.pop3: expected a string like "host:port", got an integer 110',
        "unknown environment variable POSTFACH_FOO (did you mean POSTFACH_CONFIG?)",
        f'{path}: hostname: "mail_1.example" is not a valid DNS name '
        '(label "mail_1" has characters other than letters, digits and hyphens)',
        f'{path}: listen.imap: "127.0.0.1:99999" is not a valid host:port (port must be 0 to 65535)',
        f"{path}: store.url: postgresql: store URLs are not supported yet",
        f'{path}: listen.submission: "127.0.0.1:2525" clashes with the smtp listener ("127.0.0.1:2525")',
        f"{path}: tls.cert: a certificate is set without a key; set tls.key or POSTFACH_TLS_KEY too",
    ]


def test_config_is_a_plain_dataclass_for_tests(tmp_path, monkeypatch):
    # Other tests build variants with dataclasses.replace; keep that working.
    monkeypatch.chdir(tmp_path)
    config = dataclasses.replace(load_config(None, {}), hostname="other.example.test")
    assert isinstance(config, Config) and config.hostname == "other.example.test"


# --- the auth and pop3 tables ---------------------------------------------------


def test_plaintext_on_loopback_is_off_and_pop3_idle_timeout_is_ten_minutes_by_default(tmp_path):
    config = load_config(write_config(tmp_path, ""), {})
    assert config.allow_plaintext_on_loopback is False
    assert config.pop3_idle_timeout == 600
    assert config.pop3_exclusive_lock is False


def test_plaintext_on_loopback_and_idle_timeout_from_the_file(tmp_path):
    path = write_config(
        tmp_path, "[auth]\nallow_plaintext_on_loopback = true\n[pop3]\nidle_timeout = 5\nexclusive_lock = true\n"
    )
    config = load_config(path, {})
    assert config.allow_plaintext_on_loopback is True
    assert config.pop3_idle_timeout == 5
    assert config.pop3_exclusive_lock is True
    assert load_config(path, {"POSTFACH_POP3_EXCLUSIVE_LOCK": "off"}).pop3_exclusive_lock is False


def test_plaintext_on_loopback_and_idle_timeout_from_the_environment(tmp_path):
    path = write_config(tmp_path, "[auth]\nallow_plaintext_on_loopback = true\n[pop3]\nidle_timeout = 5\n")
    environ = {"POSTFACH_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK": "no", "POSTFACH_POP3_IDLE_TIMEOUT": "30"}
    config = load_config(path, environ)
    assert config.allow_plaintext_on_loopback is False
    assert config.pop3_idle_timeout == 30
    assert load_config(path, {"POSTFACH_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK": "1"}).allow_plaintext_on_loopback


@pytest.mark.parametrize(
    ("text", "environ", "problem"),
    [
        ('[auth]\nallow_plaintext_on_loopback = "yes"\n', {},
         'auth.allow_plaintext_on_loopback: expected a boolean, got a string "yes"'),
        ("[pop3]\nidle_timeout = 0\n", {}, "pop3.idle_timeout: must be at least 1 second, got 0"),
        ('[pop3]\nidle_timeout = "10m"\n', {}, 'pop3.idle_timeout: expected an integer, got a string "10m"'),
        ("[pop3]\nidle_timout = 5\n", {}, 'unknown key "pop3.idle_timout" in [pop3] (did you mean "pop3.idle_timeout"?)'),
    ],
)
def test_auth_and_pop3_mistakes(tmp_path, text, environ, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path, environ) == [f"{path}: {problem}"]


def test_bad_plaintext_or_timeout_variable_names_the_variable(tmp_path):
    path = write_config(tmp_path, "")
    environ = {"POSTFACH_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK": "maybe", "POSTFACH_POP3_IDLE_TIMEOUT": "-5"}
    assert problems_of(path, environ) == [
        'POSTFACH_AUTH_ALLOW_PLAINTEXT_ON_LOOPBACK: "maybe" is not true or false',
        "POSTFACH_POP3_IDLE_TIMEOUT: must be at least 1 second, got -5",
    ]


# --- the smtp table ---------------------------------------------------------------


def test_smtp_limits_default_to_50_mb_and_100_recipients(tmp_path):
    config = load_config(write_config(tmp_path, ""), {})
    assert config.smtp_max_message_size == 50 * 1024 * 1024
    assert config.smtp_max_recipients == 100


def test_smtp_limits_from_the_file_and_the_environment(tmp_path):
    path = write_config(tmp_path, "[smtp]\nmax_message_size = 10485760\nmax_recipients = 20\n")
    config = load_config(path, {})
    assert (config.smtp_max_message_size, config.smtp_max_recipients) == (10485760, 20)
    config = load_config(path, {"POSTFACH_SMTP_MAX_RECIPIENTS": "7", "POSTFACH_SMTP_MAX_MESSAGE_SIZE": "4096"})
    assert (config.smtp_max_message_size, config.smtp_max_recipients) == (4096, 7)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[smtp]\nmax_message_size = 10\n", "smtp.max_message_size: must be 1024 to 1073741824 bytes, got 10"),
        ('[smtp]\nmax_message_size = "50M"\n', 'smtp.max_message_size: expected an integer, got a string "50M"'),
        ("[smtp]\nmax_recipients = 0\n", "smtp.max_recipients: must be 1 to 10000, got 0"),
        ("[smtp]\nmax_rcpt = 5\n", 'unknown key "smtp.max_rcpt" in [smtp] (did you mean "smtp.max_recipients"?)'),
    ],
)
def test_smtp_limit_mistakes(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path) == [f"{path}: {problem}"]


def test_outbound_settings_default_to_five_days_of_backoff_and_the_system_resolver(tmp_path):
    config = load_config(write_config(tmp_path, ""), {})
    assert config.queue_max_age == 5 * 86400
    assert config.queue_retry_delays == (60, 300, 900, 1800, 3600, 7200, 14400)
    assert config.dns_nameservers == () and config.dns_timeout == 5
    assert dict(config.routes) == {} and config.smtp_smarthost is None
    assert config.smtp_dmarc_reject is True and config.smtp_outbound_port == 25


def test_outbound_settings_from_the_file_and_the_environment(tmp_path):
    path = write_config(
        tmp_path,
        '[routes]\n"B.Test" = "127.0.0.1:2526"\n'
        '[dns]\nnameservers = ["127.0.0.1:5353", "192.0.2.53"]\ntimeout = 2\n'
        '[queue]\nmax_age = "2d"\nretry_delays = ["30s", "5m", "1h"]\n'
        '[smtp]\nsmarthost = "relay.example.net:587"\ndmarc_reject = false\noutbound_port = 2525\n',
    )
    config = load_config(path, {})
    assert dict(config.routes) == {"b.test": ListenAddress("127.0.0.1", 2526)}
    assert config.dns_nameservers == (ListenAddress("127.0.0.1", 5353), ListenAddress("192.0.2.53", 53))
    assert (config.dns_timeout, config.queue_max_age, config.queue_retry_delays) == (2, 2 * 86400, (30, 300, 3600))
    assert config.smtp_smarthost == ListenAddress("relay.example.net", 587)
    assert config.smtp_dmarc_reject is False and config.smtp_outbound_port == 2525
    config = load_config(path, {"POSTFACH_QUEUE_MAX_AGE": "3h", "POSTFACH_SMTP_SMARTHOST": ""})
    assert config.queue_max_age == 3 * 3600 and config.smtp_smarthost is None


def test_the_vacation_period_defaults_to_seven_days(tmp_path):
    assert load_config(write_config(tmp_path, ""), {}).vacation_period == 7 * 86400
    assert load_config(write_config(tmp_path, '[vacation]\nperiod = "3d"\n'), {}).vacation_period == 3 * 86400
    assert load_config(write_config(tmp_path, ""), {"POSTFACH_VACATION_PERIOD": "12h"}).vacation_period == 12 * 3600


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[queue]\nmax_age = "soon"\n', 'queue.max_age: "soon" is not a duration (e.g. "30s", "5m", "2h", "5d")'),
        ("[queue]\nretry_delays = []\n", "queue.retry_delays: must name at least one duration"),
        ('[vacation]\nperiod = "0s"\n', 'vacation.period: "0s" is not a duration (e.g. "30s", "5m", "2h", "5d")'),
        ('[dns]\nnameservers = ["ns.example:53"]\n',
         'dns.nameservers: "ns.example:53" must be an IP address (a name would need a resolver to find it)'),
        ('[routes]\n"b.test" = "nowhere"\n',
         'routes: route for "b.test": "nowhere" is not a valid host:port (port missing)'),
        ('[routes]\n"b.test" = 25\n', 'routes: the route for "b.test" must be a string like "host:port", got an integer 25'),
    ],
)
def test_outbound_setting_mistakes(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path) == [f"{path}: {problem}"]


def test_imap_limits_and_timeouts(tmp_path):
    defaults = load_config(write_config(tmp_path, ""), {})
    assert (defaults.imap_login_timeout, defaults.imap_idle_timeout) == (60, 1800)
    assert (defaults.imap_max_connections_per_address, defaults.imap_max_connections_per_account) == (50, 20)
    path = write_config(tmp_path, "[imap]\nlogin_timeout = 5\nmax_connections_per_account = 3\n")
    config = load_config(path, {"POSTFACH_IMAP_IDLE_TIMEOUT": "900"})
    assert (config.imap_login_timeout, config.imap_idle_timeout, config.imap_max_connections_per_account) == (5, 900, 3)
    with pytest.raises(ConfigError, match="imap.max_connections_per_address: must be 1 to 100000, got 0"):
        load_config(write_config(tmp_path, "[imap]\nmax_connections_per_address = 0\n"), {})


def test_login_security_defaults_follow_the_documented_rule(tmp_path):
    config = load_config(write_config(tmp_path, ""), {})
    assert (config.auth_quarantine_failures, config.auth_quarantine_seconds, config.auth_quarantine_scope) == (
        3, 600.0, "account"
    )
    assert (config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism) == (3, 65536, 4)
    assert config.auth_ban_accounts == 10 and config.auth_throttle_max_delay >= config.auth_throttle_delay


def test_login_security_from_the_file_and_the_environment(tmp_path):
    path = write_config(
        tmp_path,
        '[auth]\nquarantine_seconds = 0.5\nquarantine_scope = "account+address"\nthrottle_delay = 0\n'
        "argon2_memory_kib = 1024\nargon2_parallelism = 1\n",
    )
    config = load_config(path, {"POSTFACH_AUTH_QUARANTINE_FAILURES": "5", "POSTFACH_AUTH_BAN_SECONDS": "1.5"})
    assert (config.auth_quarantine_seconds, config.auth_quarantine_scope, config.auth_throttle_delay) == (
        0.5, "account+address", 0.0
    )
    assert (config.auth_quarantine_failures, config.auth_ban_seconds) == (5, 1.5)
    assert (config.argon2_memory_kib, config.argon2_parallelism) == (1024, 1)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[auth]\nquarantine_scope = "address"\n',
         'auth.quarantine_scope: "address" is not a quarantine scope (known: "account", "account+address")'),
        ("[auth]\nquarantine_seconds = 0\n",
         "auth.quarantine_seconds: must be more than 0 and at most a year of seconds, got 0"),
        ('[auth]\nquarantine_seconds = "10m"\n', 'auth.quarantine_seconds: expected a number, got a string "10m"'),
        ("[auth]\nquarantine_failures = 0\n", "auth.quarantine_failures: must be 1 to 1000, got 0"),
        ("[auth]\nargon2_memory_kib = 16\nargon2_parallelism = 4\n",
         "auth.argon2_memory_kib: argon2 needs at least 8 KiB per lane: 4 lanes need 32"),
        ("[auth]\nthrottle_delay = 5\nthrottle_max_delay = 1\n",
         "auth.throttle_max_delay: the longest delay (1.0 s) is shorter than the first (5.0 s)"),
    ],
)
def test_login_security_mistakes(tmp_path, text, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path) == [f"{path}: {problem}"]


def test_pop3_and_smtp_connection_limits(tmp_path):
    defaults = load_config(write_config(tmp_path, ""), {})
    assert (defaults.pop3_max_connections_per_address, defaults.smtp_max_connections_per_address) == (50, 50)
    assert defaults.pop3_max_commands_before_login == 20
    path = write_config(tmp_path, "[pop3]\nmax_connections_per_address = 5\n[smtp]\nmax_connections_per_address = 7\n")
    config = load_config(path, {"POSTFACH_POP3_MAX_COMMANDS_BEFORE_LOGIN": "9"})
    assert (config.pop3_max_connections_per_address, config.smtp_max_connections_per_address) == (5, 7)
    assert config.pop3_max_commands_before_login == 9
    with pytest.raises(ConfigError, match="smtp.max_connections_per_address: must be 1 to 100000, got 0"):
        load_config(write_config(tmp_path, "[smtp]\nmax_connections_per_address = 0\n"), {})
    with pytest.raises(ConfigError, match="pop3.max_commands_before_login: must be 1 to 1000, got 0"):
        load_config(write_config(tmp_path, "[pop3]\nmax_commands_before_login = 0\n"), {})


# --- the audit table ---------------------------------------------------------------


def test_audit_retention_is_90_days_unless_the_file_or_the_environment_says_otherwise(tmp_path):
    assert load_config(write_config(tmp_path, ""), {}).audit_retention_days == 90
    path = write_config(tmp_path, "[audit]\nretention_days = 30\n")
    assert load_config(path, {}).audit_retention_days == 30
    assert load_config(path, {"POSTFACH_AUDIT_RETENTION_DAYS": "1"}).audit_retention_days == 1


@pytest.mark.parametrize(
    ("text", "environ", "problem"),
    [
        ("[audit]\nretention_days = 0\n", {}, "{path}: audit.retention_days: must be 1 to 36500, got 0"),
        ('[audit]\nretention_days = "90d"\n', {},
         '{path}: audit.retention_days: expected an integer, got a string "90d"'),
        ("", {"POSTFACH_AUDIT_RETENTION_DAYS": "-5"}, "POSTFACH_AUDIT_RETENTION_DAYS: must be 1 to 36500, got -5"),
        ("[audit]\nretention = 30\n", {},
         '{path}: unknown key "audit.retention" in [audit] (did you mean "audit.retention_days"?)'),
    ],
)
def test_audit_retention_mistakes(tmp_path, text, environ, problem):
    path = write_config(tmp_path, text)
    assert problems_of(path, environ) == [problem.format(path=path)]
