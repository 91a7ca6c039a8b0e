#!/usr/bin/env bash
# Postfach side by side with Dovecot (IMAP, POP3) and Postfix (SMTP, handing to
# Dovecot over LMTP, the usual pairing) on this machine, in one run (issue 7).
#
#   bench/compare.sh [--quick] [--workers N] [--keep] [--markdown FILE]
#
#   --quick        smaller counts and shorter runs, to try it out (about 2 minutes)
#   --workers N    passed to `postfach serve --workers N` (left out when this
#                  checkout's serve has no such option; without it, Postfach's default)
#   --keep         keep the scratch directory (configs, logs, JSON results)
#   --markdown F   also write the table to F
#
# Needs root: it installs Debian's dovecot-imapd, dovecot-pop3d, dovecot-lmtpd
# and postfix when they are missing (without starting or enabling their system
# services), and runs both from private configurations in a scratch directory:
# 127.0.0.1 only, unused ports, one self-signed certificate for every server,
# stopped at the end whatever happens. The system's own mail setup, if any, is
# left alone.
#
# Every server gets the same accounts (same password, same argon2id hash and
# parameters), the same INBOX contents and the same loads over TLS:
#   IMAP   bench/imap_load.py, the mix, 10 and 50 clients (IMAPS)
#   POP3   bench/pop3_load.py, STAT+UIDL+LIST and RETR of every message of a
#          10,000-message INBOX (POP3S)
#   SMTP   bench/smtp_load.py, 20 connections of 10 KB messages to the MX port
#          over STARTTLS, counted when they are in the mailboxes (IMAP STATUS)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
python="$repo/.venv/bin/python"
export PYTHONPATH="$repo/src"

quick=0 workers="" keep=0 markdown=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --workers) workers="${2:?--workers needs a number}"; shift ;;
        --keep) keep=1 ;;
        --markdown) markdown="$(realpath -m "${2:?--markdown needs a file}")"; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "compare.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    messages=50 seconds=5 warmup=2 pop_messages=2000 pop_rounds=3 smtp_messages=1000
else
    messages=200 seconds=30 warmup=5 pop_messages=10000 pop_rounds=5 smtp_messages=5000
fi
[ "$(id -u)" = 0 ] || { echo "compare.sh: run it as root (it installs packages and starts Dovecot and Postfix)" >&2; exit 1; }
[ -x "$python" ] || "$repo/scripts/bootstrap"

# --- packages ---------------------------------------------------------------------
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
missing=()
for package in dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix; do
    installed "$package" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    new_services=()  # only a service this run brings onto the machine is kept from starting at boot
    installed dovecot-core || new_services+=(dovecot)
    installed postfix || new_services+=(postfix)
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    policy_made=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then  # the packages must not start their system daemons now
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_made=1
    fi
    status=0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
    if [ "$policy_made" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ "$status" = 0 ] || { echo "compare.sh: installing ${missing[*]} failed" >&2; exit 1; }
    for service in "${new_services[@]}"; do
        deb-systemd-helper disable "$service.service" >/dev/null 2>&1 || true
        update-rc.d "$service" disable >/dev/null 2>&1 || true
    done
fi
dovecot_version="$(dovecot --version | cut -d' ' -f1)"
postfix_version="$(postconf -d -h mail_version)"

# --- scratch directory, and stopping everything at the end ---------------------------
scratch="$(mktemp -d /tmp/postfach-compare.XXXXXX)"
chmod 755 "$scratch"  # Dovecot's mail processes (nobody) walk through it
mkdir -p "$scratch"/{tls,dovecot,postfix/etc,postfix/spool,postfix/lib,postfach,results,logs}
postfach_pid="" dns_pid=""
cleanup() {
    set +e
    [ -n "$postfach_pid" ] && kill -TERM "$postfach_pid" 2>/dev/null && wait "$postfach_pid" 2>/dev/null
    if [ -f "$scratch/postfix/spool/pid/master.pid" ]; then
        postfix -c "$scratch/postfix/etc" stop >/dev/null 2>&1
    fi
    if [ -f "$scratch/dovecot/run/master.pid" ]; then
        pid="$(cat "$scratch/dovecot/run/master.pid")"
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    [ -n "$dns_pid" ] && kill -TERM "$dns_pid" 2>/dev/null && wait "$dns_pid" 2>/dev/null
    if [ "$keep" = 1 ]; then echo "kept $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Six free ports below the kernel's ephemeral range, so that nothing binding port 0 meanwhile
# (a test suite running beside us) takes one before our servers do.
read -r pf_imaps pf_pop3s pf_smtp dc_imaps dc_pop3s px_smtp < <("$python" -c '
import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
found = []
for port in random.sample(range(20000, min(low, 32768)), 2000):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.append(port)
    if len(found) == 6:
        break
print(*found)')

busy() {  # percent of all cores busy during the next second (our servers idle: someone else's work)
    local a b
    read -r -a a < /proc/stat; sleep 1; read -r -a b < /proc/stat
    local idle=$(( b[4] + b[5] - a[4] - a[5] )) total=0 i
    for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

quiet() {  # the busy figure once the machine has settled (below 10 %), or after a minute
    local percent
    for _ in $(seq 60); do
        percent="$(busy)"
        [ "$percent" -lt 10 ] && break
    done
    echo "$percent"
}

wait_for_port() {  # PORT NAME
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "compare.sh: $2 does not listen on 127.0.0.1:$1" >&2
    return 1
}

# One certificate for every server: the same key exchange and signature cost.
openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \
    -keyout "$scratch/tls/key.pem" -out "$scratch/tls/cert.pem" 2>/dev/null

# --- Postfach -----------------------------------------------------------------------
"$python" "$here/compare.py" dns --port-file "$scratch/dns.port" &
dns_pid=$!
for _ in $(seq 100); do [ -s "$scratch/dns.port" ] && break; sleep 0.1; done
cat > "$scratch/postfach/postfach.toml" <<EOF
data_dir = "data"
hostname = "mail.example.test"

[listen]
imaps = "127.0.0.1:$pf_imaps"
pop3s = "127.0.0.1:$pf_pop3s"
smtp = "127.0.0.1:$pf_smtp"

[tls]
cert = "$scratch/tls/cert.pem"
key = "$scratch/tls/key.pem"

[dns]
nameservers = ["127.0.0.1:$(cat "$scratch/dns.port")"]
EOF

percent="$(busy)"
if [ "$percent" -gt 20 ]; then
    echo "note: $percent% of the CPU is busy with other work already: the figures will be noisy" >&2
fi
echo "filling identical mailboxes ($messages messages x 50 accounts, $pop_messages in the POP3 INBOX)"
"$python" "$here/compare.py" fill --dir "$scratch" --postfach-config "$scratch/postfach/postfach.toml" \
    --messages "$messages" --pop-messages "$pop_messages"
chown -R nobody:nogroup "$scratch/mail"

serve_args=()
if [ -n "$workers" ]; then
    if "$python" -m postfach serve --help 2>/dev/null | grep -q -- --workers; then
        serve_args=(--workers "$workers")
    else
        echo "note: this checkout's postfach serve has no --workers; running it without" >&2
        workers=""
    fi
fi
"$python" -m postfach --config "$scratch/postfach/postfach.toml" serve "${serve_args[@]}" \
    2> "$scratch/logs/postfach.log" &
postfach_pid=$!

# --- Dovecot: IMAPS, POP3S, and LMTP for Postfix ----------------------------------------
cat > "$scratch/dovecot/dovecot.conf" <<EOF
# A private instance for bench/compare.sh; everything else is Dovecot's default
# (fsync: mail_fsync = optimized, like a packaged install).
instance_name = postfach-compare
base_dir = $scratch/dovecot/run
state_dir = $scratch/dovecot/state
log_path = $scratch/logs/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <$scratch/tls/cert.pem
ssl_key = <$scratch/tls/key.pem
ssl_min_protocol = TLSv1.2
# Postfach's policy: forward secrecy with AEAD ciphers only.
ssl_cipher_list = ECDHE+AESGCM:ECDHE+CHACHA20
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = $scratch/users.passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$scratch/mail/%d/%n
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = $dc_imaps
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
  inet_listener pop3s {
    port = $dc_pop3s
    ssl = yes
  }
}
service lmtp {
  unix_listener $scratch/dovecot/lmtp {
    mode = 0666
  }
}
EOF
dovecot -c "$scratch/dovecot/dovecot.conf"

# --- Postfix: the MX, delivering to Dovecot over LMTP -----------------------------------
sed 's/:.*/ OK/' "$scratch/users.passwd" > "$scratch/postfix/etc/mailboxes"
cat > "$scratch/postfix/etc/main.cf" <<EOF
# A private instance for bench/compare.sh; everything else is Postfix's default.
compatibility_level = 3.6
config_directory = $scratch/postfix/etc
queue_directory = $scratch/postfix/spool
data_directory = $scratch/postfix/lib
maillog_file = $scratch/logs/postfix.log
maillog_file_prefixes = $scratch
myhostname = mail.example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_tls_cert_file = $scratch/tls/cert.pem
smtpd_tls_key_file = $scratch/tls/key.pem
smtpd_tls_security_level = may
virtual_mailbox_domains = example.test
virtual_mailbox_maps = texthash:$scratch/postfix/etc/mailboxes
virtual_transport = lmtp:unix:$scratch/dovecot/lmtp
# No local(8) delivery here: without these every smtpd logs a missing /etc/aliases.db.
alias_maps =
alias_database =
EOF
# Debian's master.cf, with the smtp listener on our port and no chroot (upstream's
# default; Debian's chroot needs copies of /etc files that only its init script makes).
sed -E -e '/^[a-z]/ s/^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)/\1n\2/' -e "s/^smtp( +)inet/127.0.0.1:$px_smtp inet/" \
    /etc/postfix/master.cf.proto > "$scratch/postfix/etc/master.cf"
chown postfix "$scratch/postfix/lib"
postfix -c "$scratch/postfix/etc" start >/dev/null 2>&1 || {
    echo "compare.sh: Postfix did not start:" >&2; tail "$scratch/logs/postfix.log" >&2; exit 1; }

for _ in $(seq 600); do  # every listener bound (port taken: it says so and ends)
    grep -q "postfach ready" "$scratch/logs/postfach.log" && break
    kill -0 "$postfach_pid" 2>/dev/null || break
    sleep 0.1
done
grep -q "postfach ready" "$scratch/logs/postfach.log" || {
    echo "compare.sh: Postfach did not start:" >&2; tail "$scratch/logs/postfach.log" >&2; exit 1; }
wait_for_port "$dc_imaps" Dovecot && wait_for_port "$dc_pop3s" Dovecot && wait_for_port "$px_smtp" Postfix
if grep -q "Fatal" "$scratch/logs/dovecot.log" || ! kill -0 "$(cat "$scratch/dovecot/run/master.pid")" 2>/dev/null; then
    echo "compare.sh: Dovecot did not start:" >&2; tail "$scratch/logs/dovecot.log" >&2; exit 1
fi

# --- the loads: each against Postfach, then against its peer ---------------------------
background=""
run() {  # NAME SERVER SCRIPT ARGS...
    local name="$1" server="$2" script="$3" percent
    shift 3
    # A server still finishing what the last load left (Postfach indexing 5,000 delivered
    # messages) would take the CPU from the next load's server; anything else skews it too.
    percent="$(quiet)"
    background+="${background:+, }$name $server $percent%"
    echo
    echo "== $name: $server (the second before: $percent% of the CPU busy with other work)"
    if ! "$python" "$here/$script" --json "$scratch/results/$name-$server.json" "$@" \
        2>&1 | tee "$scratch/logs/$name-$server.txt"; then
        echo "== $name against $server failed; its row stays empty"
    fi
}
common=(--host 127.0.0.1 --password "bench password 123")
for clients in 10 50; do
    for server in postfach dovecot; do
        if [ "$server" = postfach ]; then port=$pf_imaps; else port=$dc_imaps; fi
        run "imap$clients" "$server" imap_load.py "${common[@]}" --port "$port" \
            --user-format 'user{n}@example.test' --clients "$clients" --seconds "$seconds" --warmup "$warmup"
    done
done
run pop3 postfach pop3_load.py "${common[@]}" --port "$pf_pop3s" --user-format pop@example.test --rounds "$pop_rounds"
run pop3 dovecot pop3_load.py "${common[@]}" --port "$dc_pop3s" --user-format pop@example.test --rounds "$pop_rounds"
run smtp postfach smtp_load.py "${common[@]}" --port "$pf_smtp" --imaps-port "$pf_imaps" --starttls \
    --user-format 'smtp{n}@example.test' --messages "$smtp_messages"
run smtp postfix smtp_load.py "${common[@]}" --port "$px_smtp" --imaps-port "$dc_imaps" --starttls \
    --user-format 'smtp{n}@example.test' --messages "$smtp_messages"

# --- the table --------------------------------------------------------------------------
echo
mode="full"; [ "$quick" = 1 ] && mode="quick"
serving="postfach serve --workers left to its default"
[ -n "$workers" ] && serving="postfach serve --workers $workers"
"$python" "$here/compare.py" table "$scratch/results" ${markdown:+--markdown "$markdown"} \
    --note "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown), $mode mode, $(nproc) cores" \
    --note "$serving; Dovecot $dovecot_version; Postfix $postfix_version (to Dovecot LMTP)" \
    --note "CPU busy with other work in the second before each load (100% = all cores): $background" \
    --note "ratio = Postfach ÷ peer: above 1 is better for Postfach where higher is better, below 1 where lower is"
echo
echo "compare.sh took $SECONDS s"
