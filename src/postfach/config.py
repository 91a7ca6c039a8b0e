"""Postfach's settings: read once from a TOML file and the environment, validated, frozen.

Where a setting comes from, weakest first:

1. the embedded default (no file at all): data under ./data, every listener
   on 0.0.0.0 at `DEFAULT_PORTS`, SQLite in the data directory;
2. the config file (`--config FILE` or `POSTFACH_CONFIG`); a listener the
   file leaves out is not started;
3. the environment: one `POSTFACH_*` variable per setting (`SETTINGS[k].env`),
   e.g. `POSTFACH_LISTEN_IMAP=127.0.0.1:0`; an empty value clears an optional
   setting (turns a listener off).

Invariants of a `Config` that `load_config` returns:

- every path is absolute; relative paths in the file are relative to the
  file's directory, relative paths in the environment to the working directory;
- the data directory exists and a file could be created in it;
- `listen` holds exactly the listeners to start, no two on the same address
  (port 0, "any free port", excepted);
- `tls_cert` and `tls_key` are both None or both name files that load together;
- so does every pair in `tls_certificates`, whose names are normalised like `hostname`
  (a wildcard as "*." and such a name);
- `store_url` is normalised: "sqlite:///abs/path" (empty authority, absolute path).

Every mistake is reported, not only the first: `ConfigError.problems` holds one
sentence per mistake, each naming where it is (file and key, or variable).

To add a setting: add a row to `SETTINGS` (dotted key, TOML type, parser from
config_values.py), a field to `Config`, and a line in `_build`. A new table exists as soon as a
row's key names it (e.g. "limits.max_message_bytes").
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import socket
import tempfile
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postfach.config_values import (
    SQLITE_FILE_NAME,
    CertificatePair,
    Invalid,
    ListenAddress,
    certificate_problems,
    describe,
    int_range,
    normalise_dns_name,
    os_error_text,
    parse_bool,
    parse_certificates,
    parse_connection_limit,
    parse_delay,
    parse_duration,
    parse_durations,
    parse_hostname,
    parse_listen,
    parse_message_size,
    parse_nameservers,
    parse_path,
    parse_port,
    parse_positive_seconds,
    parse_quarantine_scope,
    parse_recipient_limit,
    parse_routes,
    parse_seconds,
    parse_store_url,
)

ENV_PREFIX = "POSTFACH_"
CONFIG_ENV = "POSTFACH_CONFIG"
# POSTFACH_* variables that are not settings; every other unknown one is an error.
NON_SETTING_VARIABLES = frozenset({CONFIG_ENV})

LISTENER_NAMES = ("imap", "imaps", "pop3", "pop3s", "smtp", "submission", "submissions", "http")
# The mail listeners that speak TLS from the first byte (RFC 8314); the rest offer STARTTLS.
IMPLICIT_TLS = frozenset({"imaps", "pop3s", "submissions"})
# Unprivileged stand-ins for 143, 993, 110, 995, 25, 587, 465, 443, so that the
# embedded default runs without root; a real deployment names its ports.
DEFAULT_PORTS = {
    "imap": 1143,
    "imaps": 1993,
    "pop3": 1110,
    "pop3s": 1995,
    "smtp": 2525,
    "submission": 1587,
    "submissions": 1465,
    "http": 8443,
}
DEFAULT_HOST = "0.0.0.0"
DEFAULT_DATA_DIR = "data"


class ConfigError(Exception):
    """The configuration has mistakes; `problems` holds one sentence per mistake."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Config:
    data_dir: Path
    hostname: str
    listen: Mapping[str, ListenAddress]  # only the listeners to start, in LISTENER_NAMES order
    tls_cert: Path | None  # None: tls.ensure_certificate makes a self-signed pair in tls_dir
    tls_key: Path | None
    store_url: str
    config_file: Path | None
    # Processes serving the listeners (`postfach serve --workers N` overrides it).
    workers: int = 1
    # USER/PASS and AUTH without TLS, from loopback clients only (a local webmail, fetchmail).
    allow_plaintext_on_loopback: bool = False
    pop3_idle_timeout: int = 600  # seconds; RFC 1939 §3 asks for at least 600, tests use less
    pop3_exclusive_lock: bool = False
    pop3_max_connections_per_address: int = 50
    pop3_max_commands_before_login: int = 20  # then -ERR and close: a password sprayer must reconnect
    imap_login_timeout: int = 60  # seconds of silence before login
    imap_idle_timeout: int = 30 * 60  # after login; RFC 9051 §5.4: at least 30 minutes
    imap_max_connections_per_address: int = 50
    imap_max_connections_per_account: int = 20
    smtp_max_message_size: int = 50 * 1024 * 1024  # bytes of DATA; advertised as SIZE (RFC 1870)
    smtp_max_recipients: int = 100  # per message; RFC 5321 §4.5.3.1.8 asks for at least 100
    smtp_max_connections_per_address: int = 50  # across smtp, submission and submissions
    smtp_smarthost: ListenAddress | None = None  # all outbound mail goes there instead of the MX
    smtp_outbound_port: int = 25  # the port of a remote MX (tests point it at a loopback server)
    smtp_dmarc_reject: bool = True  # refuse (550 5.7.1) MX mail failing DMARC under p=reject
    queue_max_age: int = 5 * 86400  # seconds a message is retried before it bounces
    queue_retry_delays: tuple[int, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)  # the last one repeats
    vacation_period: int = 7 * 86400  # seconds: the autoresponder answers a sender once in this
    dns_nameservers: tuple[ListenAddress, ...] = ()  # empty: the system's resolver (/etc/resolv.conf)
    dns_timeout: int = 5  # seconds: the most the DNS checks of one message may take
    # Static routes: mail for a domain goes to this host:port instead of the domain's MX.
    routes: Mapping[str, ListenAddress] = field(default_factory=lambda: types.MappingProxyType({}))
    # The certificate to present, by SNI name ("*.example.org" for one more label); others get tls_cert.
    tls_certificates: Mapping[str, CertificatePair] = field(default_factory=lambda: types.MappingProxyType({}))
    # Login quarantine and throttling (postfach.auth.quarantine; README "Login security").
    auth_quarantine_failures: int = 3  # wrong passwords that put a credential in quarantine
    auth_quarantine_seconds: float = 600.0  # how long; another new wrong password restarts it
    auth_quarantine_scope: str = "account"  # or "account+address": per credential and source address
    auth_throttle_delay: float = 0.5  # seconds before an address's next login after its 2nd failure; doubles
    auth_throttle_max_delay: float = 10.0
    auth_throttle_window: float = 900.0  # seconds an address's failures count for throttling and bans
    auth_ban_accounts: int = 10  # an address failing for this many accounts in the window is banned
    auth_ban_seconds: float = 3600.0
    # argon2id for new hashes; a login with a hash made otherwise rehashes it (RFC 9106 §4).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    audit_retention_days: int = 90  # login attempts older than this are deleted

    @property
    def db_path(self) -> Path:
        if not self.store_url.startswith("sqlite://"):
            raise ValueError(f"the store {self.store_url.split(':', 1)[0]} has no database file")
        return Path(self.store_url[len("sqlite://") :])

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"


# --- the schema -------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str  # dotted key in the file: "hostname", "listen.imap", "tls.cert"
    kind: type  # what TOML must give: str, int, float (any number), bool or list (of strings)
    parse: Callable[[Any, Path], Any]  # (value of `kind`, base directory) -> value; raises Invalid
    optional: bool = False  # an empty environment value clears it

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")

    @property
    def table(self) -> str | None:
        return self.key.split(".", 1)[0] if "." in self.key else None


SETTINGS: dict[str, Setting] = {
    setting.key: setting
    for setting in [
        Setting("data_dir", str, parse_path),
        Setting("hostname", str, parse_hostname),
        Setting("workers", int, int_range(1, 256)),
        *(Setting(f"listen.{name}", str, parse_listen, optional=True) for name in LISTENER_NAMES),
        Setting("tls.cert", str, parse_path, optional=True),
        Setting("tls.key", str, parse_path, optional=True),
        Setting("store.url", str, parse_store_url),
        Setting("auth.allow_plaintext_on_loopback", bool, parse_bool),
        Setting("auth.quarantine_failures", int, int_range(1, 1000)),
        Setting("auth.quarantine_seconds", float, parse_positive_seconds),
        Setting("auth.quarantine_scope", str, parse_quarantine_scope),
        Setting("auth.throttle_delay", float, parse_delay),
        Setting("auth.throttle_max_delay", float, parse_delay),
        Setting("auth.throttle_window", float, parse_positive_seconds),
        Setting("auth.ban_accounts", int, int_range(2, 100_000)),
        Setting("auth.ban_seconds", float, parse_positive_seconds),
        Setting("auth.argon2_time_cost", int, int_range(1, 100)),
        Setting("auth.argon2_memory_kib", int, int_range(8, 4 << 20)),
        Setting("auth.argon2_parallelism", int, int_range(1, 255)),
        Setting("pop3.idle_timeout", int, parse_seconds),
        Setting("pop3.exclusive_lock", bool, parse_bool),
        Setting("pop3.max_connections_per_address", int, parse_connection_limit),
        Setting("pop3.max_commands_before_login", int, int_range(1, 1000)),
        Setting("imap.login_timeout", int, parse_seconds),
        Setting("imap.idle_timeout", int, parse_seconds),
        Setting("imap.max_connections_per_address", int, parse_connection_limit),
        Setting("imap.max_connections_per_account", int, parse_connection_limit),
        Setting("smtp.max_message_size", int, parse_message_size),
        Setting("smtp.max_recipients", int, parse_recipient_limit),
        Setting("smtp.smarthost", str, parse_listen, optional=True),
        Setting("smtp.outbound_port", int, parse_port),
        Setting("smtp.dmarc_reject", bool, parse_bool),
        Setting("smtp.max_connections_per_address", int, parse_connection_limit),
        Setting("queue.max_age", str, parse_duration),
        Setting("queue.retry_delays", list, parse_durations),
        Setting("vacation.period", str, parse_duration),
        Setting("dns.nameservers", list, parse_nameservers),
        Setting("dns.timeout", int, parse_seconds),
        Setting("audit.retention_days", int, int_range(1, 36_500)),
    ]
}
# [routes] is a table whose keys are the operator's domains, so it is no row of SETTINGS (and
# has no environment variable): it is read whole and parsed as one value.
ROUTES = Setting("routes", dict, parse_routes)
TLS_CERTIFICATES = Setting("tls.certificates", dict, parse_certificates)  # likewise, keyed by domain
DOMAIN_TABLES = {setting.key: setting for setting in (ROUTES, TLS_CERTIFICATES)}
TABLES = sorted({s.table for s in SETTINGS.values() if s.table} | {ROUTES.key})

_TOML_TYPE_NAMES = {
    str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array", dict: "a table"
}
_EXAMPLES = {"listen": ' like "host:port"'}


# --- reading ----------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    value: Any  # of the setting's kind; None: cleared by an empty environment value
    origin: str  # "file: key", "POSTFACH_X" or "key (default)"
    base: Path  # relative paths are relative to this


def find_config_file(cli_path: str | None, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: --config wins, then POSTFACH_CONFIG; None means the embedded default."""
    if cli_path:
        return Path(cli_path)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return None


def _has_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return isinstance(value, kind)


def _suggest(word: str, choices: list[str], fmt: Callable[[str], str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f" (did you mean {fmt(close[0])}?)"
    return f" (known: {', '.join(fmt(c) for c in choices)})"


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{path}: cannot read the config file: {os_error_text(exc)}")
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte {data[exc.start]:#04x} at offset {exc.start}"
        problems.append(f"{path}: the config file is not valid UTF-8 ({bad})")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        problems.append(f"{path}: not valid TOML: {message[:1].lower()}{message[1:]}")
        return None


def _collect_file(document: dict[str, Any], path: Path, raw: dict[str, _Raw], problems: list[str]) -> None:
    base = path.parent
    top_keys = [s.key for s in SETTINGS.values() if s.table is None]
    for name, value in document.items():
        if name in DOMAIN_TABLES:
            _take(DOMAIN_TABLES[name], value, path, base, raw, problems)
        elif name in TABLES:
            if not isinstance(value, dict):
                problems.append(f"{path}: {name}: expected a table, got {describe(value)}")
                continue
            in_table = {
                s.key.split(".", 1)[1]: s for s in (*SETTINGS.values(), *DOMAIN_TABLES.values()) if s.table == name
            }
            known = list(in_table)
            for key, item in value.items():
                if key not in known:
                    suggestion = _suggest(key, known, lambda k: f'"{name}.{k}"')
                    problems.append(f'{path}: unknown key "{name}.{key}" in [{name}]{suggestion}')
                else:
                    _take(in_table[key], item, path, base, raw, problems)
        elif name in SETTINGS:
            _take(SETTINGS[name], value, path, base, raw, problems)
        elif isinstance(value, dict):
            problems.append(f"{path}: unknown table [{name}]{_suggest(name, TABLES, lambda t: f'[{t}]')}")
        else:
            suggestion = _suggest(name, top_keys + TABLES, lambda k: f'"{k}"')
            problems.append(f'{path}: unknown key "{name}"{suggestion}')


def _take(setting: Setting, value: Any, path: Path, base: Path, raw: dict[str, _Raw], problems: list[str]) -> None:
    origin = f"{path}: {setting.key}"
    if not _has_kind(value, setting.kind):
        example = _EXAMPLES.get(setting.table or "", "")
        problems.append(f"{origin}: expected {_TOML_TYPE_NAMES[setting.kind]}{example}, got {describe(value)}")
        return
    raw[setting.key] = _Raw(value, origin, base)


def _from_env_text(setting: Setting, text: str) -> Any:
    if setting.kind is int:
        try:
            return int(text)
        except ValueError:
            raise Invalid(f'"{text}" is not a whole number') from None
    if setting.kind is float:
        try:
            return float(text)
        except ValueError:
            raise Invalid(f'"{text}" is not a number') from None
    if setting.kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise Invalid(f'"{text}" is not true or false')
    if setting.kind is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _collect_environ(
    environ: Mapping[str, str], raw: dict[str, _Raw], shadowed: list[tuple[str, _Raw]], problems: list[str]
) -> None:
    by_env = {s.env: s for s in SETTINGS.values()}
    cwd = Path.cwd()
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        setting = by_env.get(name)
        if setting is None:
            known = sorted(NON_SETTING_VARIABLES | set(by_env))
            problems.append(f"unknown environment variable {name}{_suggest(name, known, str)}")
            continue
        text = environ[name]
        try:
            value = None if text == "" and setting.optional else _from_env_text(setting, text)
        except Invalid as exc:
            problems.append(f"{name}: {exc}")
            continue
        if setting.key in raw:
            # The value it replaces is still checked: the file should be right on its own.
            shadowed.append((setting.key, raw[setting.key]))
        raw[setting.key] = _Raw(value, name, cwd)


# --- checks across settings -------------------------------------------------


def _default_hostname() -> str:
    # getfqdn() can give a name that is not a DNS name (a container id with
    # underscores, say); a server must always have some valid name.
    try:
        return normalise_dns_name(socket.getfqdn())
    except Invalid:
        return "localhost"


def _listener_clash(a: ListenAddress, b: ListenAddress) -> bool:
    if a.port != b.port or a.port == 0:
        return False
    if a.host == b.host:
        return True
    # A wildcard holds the port on every address of its family, so a specific
    # address of that family cannot bind it too. (asyncio sets IPV6_V6ONLY, so
    # "::" and "0.0.0.0" do not clash with each other.)
    for wild, other in ((a.host, b.host), (b.host, a.host)):
        if wild in ("0.0.0.0", "::"):
            try:
                family = ipaddress.ip_address(other).version
            except ValueError:
                return True  # a name may resolve to any address of either family
            if family == ipaddress.ip_address(wild).version:
                return True
    return False


def _check_listeners(values: dict[str, Any], raw: dict[str, _Raw], problems: list[str]) -> None:
    seen: list[tuple[str, ListenAddress]] = []
    for name in LISTENER_NAMES:
        address = values.get(f"listen.{name}")
        if address is None:
            continue
        for other_name, other in seen:
            if _listener_clash(address, other):
                origin = raw[f"listen.{name}"].origin
                problems.append(f'{origin}: "{address}" clashes with the {other_name} listener ("{other}")')
                break
        else:
            seen.append((name, address))


def _check_tls(values: dict[str, Any], raw: dict[str, _Raw], problems: list[str]) -> None:
    cert, key = values.get("tls.cert"), values.get("tls.key")
    if cert is not None and key is None:
        if "tls.key" not in raw or raw["tls.key"].value is None:
            origin = raw["tls.cert"].origin
            problems.append(f"{origin}: a certificate is set without a key; set tls.key or POSTFACH_TLS_KEY too")
        return
    if key is not None and cert is None:
        if "tls.cert" not in raw or raw["tls.cert"].value is None:
            origin = raw["tls.key"].origin
            problems.append(f"{origin}: a key is set without a certificate; set tls.cert or POSTFACH_TLS_CERT too")
        return
    if cert is None:
        return
    for which, text in certificate_problems(CertificatePair(cert, key)):
        problems.append(f"{raw[f'tls.{which}'].origin}: {text}")


def _check_auth(values: dict[str, Any], raw: dict[str, _Raw], problems: list[str]) -> None:
    # argon2 needs at least 8 KiB of memory per lane (RFC 9106 §3.1).
    memory = values.get("auth.argon2_memory_kib", Config.argon2_memory_kib)
    lanes = values.get("auth.argon2_parallelism", Config.argon2_parallelism)
    if memory < 8 * lanes:
        key = "auth.argon2_memory_kib" if "auth.argon2_memory_kib" in raw else "auth.argon2_parallelism"
        problems.append(f"{raw[key].origin}: argon2 needs at least 8 KiB per lane: {lanes} lanes need {8 * lanes}")
    delay = values.get("auth.throttle_delay", Config.auth_throttle_delay)
    most = values.get("auth.throttle_max_delay", Config.auth_throttle_max_delay)
    if most < delay:
        key = "auth.throttle_max_delay" if "auth.throttle_max_delay" in raw else "auth.throttle_delay"
        problems.append(f"{raw[key].origin}: the longest delay ({most} s) is shorter than the first ({delay} s)")


def _prepare_data_dir(path: Path, origin: str, problems: list[str]) -> list[Path]:
    """Create `path` if missing and prove it writable; returns the directories created."""
    def exists(p: Path) -> bool:
        try:
            p.stat()
        except OSError:
            return False
        return True

    missing = []
    probe = path
    while not exists(probe) and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    if exists(path) and not path.is_dir():
        problems.append(f'{origin}: the data directory "{path}" is not a directory')
        return []
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problems.append(f'{origin}: cannot create the data directory "{path}": {os_error_text(exc)}')
        return []
    created = [p for p in missing if p.is_dir()]  # deepest first
    try:
        fd, probe_name = tempfile.mkstemp(prefix=".postfach-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe_name)
    except OSError as exc:
        problems.append(f'{origin}: the data directory "{path}" is not writable: {os_error_text(exc)}')
    return created


# --- loading ----------------------------------------------------------------


def load_config(path: Path | None, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, check and freeze the settings; raises ConfigError naming every mistake.

    Creates the data directory if it is missing (and removes what it created
    again if the configuration turns out to be wrong).
    """
    problems: list[str] = []
    raw: dict[str, _Raw] = {}
    cwd = Path.cwd()
    config_file = None
    file_read = True
    if path is None:
        for name in LISTENER_NAMES:
            raw[f"listen.{name}"] = _Raw(f"{DEFAULT_HOST}:{DEFAULT_PORTS[name]}", f"listen.{name} (default)", cwd)
        raw["data_dir"] = _Raw(DEFAULT_DATA_DIR, "data_dir (default)", cwd)
    else:
        config_file = Path(os.path.abspath(path))
        raw["data_dir"] = _Raw(DEFAULT_DATA_DIR, f"{config_file}: data_dir (default)", config_file.parent)
        document = _read_toml(config_file, problems)
        if document is None:
            file_read = False
        else:
            _collect_file(document, config_file, raw, problems)
    shadowed: list[tuple[str, _Raw]] = []
    _collect_environ(environ, raw, shadowed, problems)

    values: dict[str, Any] = {}
    for key, item in [*shadowed, *raw.items()]:
        if item.value is None:
            continue
        try:
            value = (DOMAIN_TABLES.get(key) or SETTINGS[key]).parse(item.value, item.base)
        except Invalid as exc:
            problems.extend(f"{item.origin}: {part}" for part in exc.parts)
            continue
        if raw[key] is item:
            values[key] = value
    if not file_read:
        # Checks across settings would judge a configuration the operator did not write.
        raise ConfigError(problems)

    _check_listeners(values, raw, problems)
    _check_tls(values, raw, problems)
    _check_auth(values, raw, problems)
    created: list[Path] = []
    if "data_dir" in values:
        created = _prepare_data_dir(values["data_dir"], raw["data_dir"].origin, problems)
    if problems:
        for directory in created:  # nothing half-done is left behind
            try:
                directory.rmdir()
            except OSError:
                pass
        raise ConfigError(problems)
    return _build(values, config_file)


def _build(values: dict[str, Any], config_file: Path | None) -> Config:
    data_dir: Path = values["data_dir"]
    listen = {name: values[f"listen.{name}"] for name in LISTENER_NAMES if f"listen.{name}" in values}
    return Config(
        data_dir=data_dir,
        hostname=values.get("hostname") or _default_hostname(),
        listen=types.MappingProxyType(listen),
        tls_cert=values.get("tls.cert"),
        tls_key=values.get("tls.key"),
        store_url=values.get("store.url") or f"sqlite://{data_dir / SQLITE_FILE_NAME}",
        config_file=config_file,
        workers=values.get("workers") or os.cpu_count() or 1,
        allow_plaintext_on_loopback=values.get("auth.allow_plaintext_on_loopback", False),
        pop3_idle_timeout=values.get("pop3.idle_timeout", 600),
        pop3_exclusive_lock=values.get("pop3.exclusive_lock", False),
        pop3_max_connections_per_address=values.get(
            "pop3.max_connections_per_address", Config.pop3_max_connections_per_address
        ),
        pop3_max_commands_before_login=values.get(
            "pop3.max_commands_before_login", Config.pop3_max_commands_before_login
        ),
        imap_login_timeout=values.get("imap.login_timeout", Config.imap_login_timeout),
        imap_idle_timeout=values.get("imap.idle_timeout", Config.imap_idle_timeout),
        imap_max_connections_per_address=values.get(
            "imap.max_connections_per_address", Config.imap_max_connections_per_address
        ),
        imap_max_connections_per_account=values.get(
            "imap.max_connections_per_account", Config.imap_max_connections_per_account
        ),
        smtp_max_message_size=values.get("smtp.max_message_size", Config.smtp_max_message_size),
        smtp_max_recipients=values.get("smtp.max_recipients", Config.smtp_max_recipients),
        smtp_smarthost=values.get("smtp.smarthost"),
        smtp_outbound_port=values.get("smtp.outbound_port", Config.smtp_outbound_port),
        smtp_dmarc_reject=values.get("smtp.dmarc_reject", Config.smtp_dmarc_reject),
        smtp_max_connections_per_address=values.get(
            "smtp.max_connections_per_address", Config.smtp_max_connections_per_address
        ),
        queue_max_age=values.get("queue.max_age", Config.queue_max_age),
        queue_retry_delays=values.get("queue.retry_delays", Config.queue_retry_delays),
        vacation_period=values.get("vacation.period", Config.vacation_period),
        dns_nameservers=values.get("dns.nameservers", ()),
        dns_timeout=values.get("dns.timeout", Config.dns_timeout),
        audit_retention_days=values.get("audit.retention_days", Config.audit_retention_days),
        routes=values.get("routes", types.MappingProxyType({})),
        tls_certificates=values.get("tls.certificates", types.MappingProxyType({})),
        **{
            field_name: values[key]
            for key, field_name in _AUTH_FIELDS.items()
            if key in values
        },
    )


# [auth] settings whose Config field is the key with "auth." turned into "auth_" (argon2: without it).
_AUTH_FIELDS = {
    key: key.replace("auth.", "" if key.startswith("auth.argon2") else "auth_")
    for key in SETTINGS
    if key.startswith("auth.") and key != "auth.allow_plaintext_on_loopback"
}
