"""IMAP at folder scale (issue 7 point 3): SELECT and SEARCH TEXT on a 100,000-message INBOX.

    .venv/bin/python bench/imap_scale.py [--messages 100000] [--data DIR] [--runs 20] [--workers N]
    .venv/bin/python bench/imap_scale.py --data DIR --src OTHER_CHECKOUT/src   (the same figures, before/after)

Builds (or, with --data DIR holding a finished build, reuses) a scratch data
directory with one account whose INBOX holds --messages realistic messages of
a few KB (varied English text with names, codes and numbers; plain, HTML
alternative, the odd attachment), filled through the store API directly and
fully indexed for full-text search. Then starts `postfach serve` and measures
over a real IMAP socket on 127.0.0.1, from sending the command to the tagged OK:

- SELECT INBOX, cold: the first SELECT after the server started (a fresh
  server for each of --cold-runs samples); once more with the folder index
  snapshots removed from the database (schema 8), as after the upgrade;
- SELECT INBOX, warm: repeated, on a new connection each time (with several
  workers, on whichever the kernel picks) and on one connection;
- SEARCH TEXT and UID SEARCH TEXT for a rare word (in a handful of messages)
  and a common one (in about a third of them), SEARCH BODY, SEARCH UNSEEN TEXT;
- the same right after a bulk delivery (--bulk messages appended over IMAP by
  eight clients), while the full-text index may still have messages pending;
  afterwards the bulk is expunged again, so the folder stays as built.

Targets: SELECT < 100 ms, SEARCH TEXT < 100 ms. Prints median and p99 per item.
A build of 100,000 messages takes a while (the search index most of it): keep
it with --data and reuse it. The machine's load average is printed with the
figures: other work on a 2-core machine shows in them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, quantile  # (puts src/ and the checkout on sys.path)

ADDRESS = "scale@bench.test"
PASSWORD = "bench password 123"
RARE_WORD = "quetzalcoatlus"  # planted in RARE_COUNT messages
RARE_COUNT = 7
COMMON_WORD = "project"  # planted in about a third of the messages
COMMON_SHARE = 0.33
BUILT_MARKER = "imap_scale.built"
TIMEOUT = [120.0]  # seconds a command may take (--timeout)

# Frequent English words (drawn Zipf-like) and made-up names and codes (rare), so that
# trigram search sees a realistic mix of very common and very rare substrings.
ENGLISH = """
the of and to a in is it you that he was for on are with as I his they be at one have this from
or had by hot word but what some we can out other were all there when up use your how said an each
she which do their time if will way about many then them write would like so these her long make
thing see him two has look more day could go come did number sound no most people my over know water
than call first who may down side been now find any new work part take get place made live where after
back little only round man year came show every good me give our under name very through just form
sentence great think say help low line differ turn cause much mean before move right boy old too same
tell does set three want air well also play small end put home read hand port large spell add even land
here must big high such follow act why ask men change went light kind off need house picture try us
again animal point mother world near build self earth father head stand own page should country found
answer school grow study still learn plant cover food sun four between state keep eye never last let
thought city tree cross farm hard start might story saw far sea draw left late run don't while press
close night real life few north open seem together next white children begin got walk example ease paper
group always music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face
wood main enough plain girl usual young ready above ever red list though feel talk bird soon body dog
family direct pose leave song measure door product black short numeral class wind question happen
complete ship area half rock order fire south problem piece told knew pass since top whole king space
heard best hour better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay against pattern
slow center love person money serve appear road map rain rule govern pull cold notice voice unit power
town fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest correct
able pound done beauty drive stood contain front teach week final gave green oh quick develop ocean warm
free minute strong special mind behind clear tail produce fact street inch multiply nothing course stay
wheel full force blue object decide surface deep moon island foot system busy test record boat common
gold possible plane stead dry wonder laugh thousand ago ran check game shape equate miss brought heat
snow tire bring yes distant fill east paint language among grand ball yet wave drop heart present heavy
dance engine position arm wide sail material size vary settle speak weight general ice matter circle
pair include divide syllable felt perhaps pick sudden count square reason length represent art subject
region energy hunt probable bed brother egg ride cell believe fraction forest sit race window store
summer train sleep prove lone leg exercise wall catch mount wish sky board joy winter sat written wild
instrument kept glass grass cow job edge sign visit past soft fun bright gas weather month million bear
finish happy hope flower clothe strange gone jump baby eight village meet root buy raise solve metal
whether push seven paragraph third shall held hair describe cook floor either result burn hill safe cat
century consider type law bit coast copy phrase silent tall sand soil roll temperature finger industry
value fight lie beat excite natural view sense ear else quite broke case middle kill son lake moment
scale loud spring observe child straight consonant nation dictionary milk speed method organ pay age
section dress cloud surprise quiet stone tiny climb cool design poor lot experiment bottom key iron
single stick flat twenty skin smile crease hole trade melody trip office receive row mouth exact symbol
die least trouble shout except wrote seed tone join suggest clean break lady yard rise bad blow oil
blood touch grew cent mix team wire cost lost brown wear garden equal sent choose fell fit flow fair
bank collect save control decimal gentle woman captain practice separate difficult doctor please
protect noon whose locate ring character insect caught period indicate radio spoke atom human history
effect electric expect crop modern element hit student corner party supply bone rail imagine provide
agree thus capital won't chair danger fruit rich thick soldier process operate guess necessary sharp
wing create neighbor wash bat rather crowd corn compare poem string bell depend meat rub tube famous
dollar stream fear sight thin triangle planet hurry chief colony clock mine tie enter major fresh search
send yellow gun allow print dead spot desert suit current lift rose continue block chart hat sell
success company subtract event particular deal swim term opposite wife shoe shoulder spread arrange camp
invent cotton born determine quart nine truck noise level chance gather shop stretch throw shine
property column molecule select wrong gray repeat require broad prepare salt nose plural anger claim
continent oxygen sugar death pretty skill women season solution magnet silver thank branch match suffix
especially fig afraid huge sister steel discuss forward similar guide experience score apple bought led
pitch coat mass card band rope slip win dream evening condition feed tool total basic smell valley nor
double seat arrive master track parent shore division sheet substance favor connect post spend chord fat
glad original share station dad bread charge proper bar offer segment slave duck instant market degree
populate chick dear enemy reply drink occur support speech nature range steam motion path liquid log
meant quotient teeth shell neck invoice meeting budget deadline report review quarter customer contract
schedule attached agenda update release server backup account password delivery shipment
""".split()
FIRST_NAMES = "Anna Ben Clara David Eva Felix Greta Hannah Ivan Julia Karl Lena Marco Nina Otto Paula Quentin " \
              "Rosa Stefan Tina Ulrich Vera Walter Xenia Yusuf Zoe Amir Beatrix Carlos Dorota Emil Fatima".split()
LAST_NAMES = "Meyer Schmidt Novak Rossi Garcia Jensen Kowalski Dubois Silva Nakamura Okafor Larsen Petrov " \
             "Haddad Fischer Weber Wagner Becker Hoffmann Schulz Koch Richter Klein Wolf Neumann Braun".split()
DOMAINS = "example.org example.net mail.example.com partner.example vendor.example shop.example".split()


def _made_up_words(rng: random.Random, count: int) -> list[str]:
    syllables = "ka lo mi ne ru ta vo shi zen dor bal fir gun hex jul kor lin mar nov pex qui ros sul tor ulm " \
                "vex wim xan yor zul bre cla dro fle gri plo stu tra whe".split()
    words = set()
    while len(words) < count:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word != RARE_WORD and COMMON_WORD not in word:
            words.add(word)
    return sorted(words)


class MessageFactory:
    """Deterministic realistic messages: the same seed gives the same folder."""

    def __init__(self, count: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        # Zipf-like draws: a few English words are very common, most are not; one word in
        # twenty is a made-up name, code or term, of which most are rare.
        self.english = ENGLISH
        self.english_weights = list(_accumulate([1.0 / (rank + 8) for rank in range(len(ENGLISH))]))
        self.made_up = _made_up_words(rng, 50_000)
        self.made_up_weights = list(_accumulate([1.0 / (rank + 20) for rank in range(len(self.made_up))]))
        self.rare_at = set(rng.sample(range(count), min(RARE_COUNT, count)))
        self.start = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def words(self, n: int) -> list[str]:
        rng = self.rng
        made_up = sum(1 for _ in range(n) if rng.random() < 0.05)
        words = rng.choices(self.english, cum_weights=self.english_weights, k=n - made_up)
        for _ in range(made_up):
            words.insert(rng.randrange(len(words) + 1),
                         rng.choices(self.made_up, cum_weights=self.made_up_weights)[0])
        return words

    def paragraph(self) -> str:
        rng = self.rng
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = self.words(rng.randint(6, 18))
            if rng.random() < 0.15:
                words.insert(rng.randrange(len(words)), f"#{rng.randint(1000, 99999)}")
            if rng.random() < 0.1:
                words.insert(rng.randrange(len(words)), f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}")
            sentence = " ".join(words)
            sentences.append(sentence[:1].upper() + sentence[1:] + rng.choice(".....?!"))
        return " ".join(sentences)

    def body_text(self, number: int) -> str:
        rng = self.rng
        target = rng.randint(1500, 5000)
        name = rng.choice(FIRST_NAMES)
        lines = [f"Hello {name},", ""]
        size = 0
        while size < target:
            paragraph = self.paragraph()
            lines.extend(_wrap(paragraph))
            lines.append("")
            size += len(paragraph)
        if rng.random() < COMMON_SHARE:
            lines.insert(rng.randint(2, len(lines) - 1), f"About the {COMMON_WORD} we discussed: see below.")
        if number in self.rare_at:
            lines.insert(rng.randint(2, len(lines) - 1), f"The {RARE_WORD} fossil arrived today.")
        if rng.random() < 0.3:
            lines.extend(["", *("> " + line for line in _wrap(self.paragraph()))])
        lines.extend(["", "Best regards,", f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"])
        return "\r\n".join(lines) + "\r\n"

    def message(self, number: int) -> tuple[bytes, datetime]:
        rng = self.rng
        sender = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        sender_address = f"{sender.split()[0].lower()}.{sender.split()[1].lower()}@{rng.choice(DOMAINS)}"
        when = self.start + timedelta(seconds=number * 600 + rng.randint(0, 599))
        subject = " ".join(self.words(rng.randint(3, 8))).capitalize()
        if rng.random() < 0.3:
            subject = "Re: " + subject
        text = self.body_text(number)
        head = (
            f"Return-Path: <{sender_address}>\r\n"
            f"Received: from mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)} by mail.example.com; "
            f"{when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"From: {sender} <{sender_address}>\r\nTo: Scale Tester <{ADDRESS}>\r\n"
            f"Subject: {subject}\r\nDate: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\n"
            f"Message-ID: <{number}.{rng.getrandbits(48):x}@{rng.choice(DOMAINS)}>\r\nMIME-Version: 1.0\r\n"
        )
        kind = rng.random()
        if kind < 0.65:
            data = head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text
        elif kind < 0.95:
            html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.split("\r\n\r\n")) + "</body></html>"
            data = (head + 'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
                    "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
                    "\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n--alt--\r\n")
        else:
            blob = rng.randbytes(900).hex()
            attachment = "\r\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
            data = (head + 'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
                    "--mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
                    "\r\n--mix\r\nContent-Type: application/octet-stream; name=\"report.bin\"\r\n"
                    "Content-Disposition: attachment; filename=\"report.bin\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\n" + attachment + "\r\n--mix--\r\n")
        return data.encode(), when


def _accumulate(values: list[float]):
    total = 0.0
    for value in values:
        total += value
        yield total


def _wrap(text: str, width: int = 72) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


# --------------------------------------------------------------------------- building the data


def write_scale_config(directory: Path, workers: int | None) -> Path:
    from tests.support.config import write_config

    extra = (f"workers = {workers}\n" if workers else "") + "[auth]\nallow_plaintext_on_loopback = true\n"
    return write_config(directory, listeners=("imap",), extra=extra)


async def build(directory: Path, count: int) -> None:
    """The account and its INBOX, through the store API; waits until the search index is complete."""
    from postfach.auth.passwords import Passwords
    from postfach.config import load_config
    from postfach.model import Flags, SystemFlag
    from postfach.store import open_store

    config = load_config(write_scale_config(directory, None), environ={})
    store = await open_store(config)
    try:
        await store.add_domain("bench.test")
        hashed = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib,
                                      config.argon2_parallelism).hash(PASSWORD)
        account = await store.add_account(ADDRESS, hashed, 1 << 50)
        inbox = await store.get_folder(account.id, "INBOX")
        factory = MessageFactory(count)
        flag_rng = random.Random(3)
        numbers = iter(range(count))
        started = time.perf_counter()
        done = [0]

        async def writer() -> None:
            for number in numbers:
                data, when = factory.message(number)
                # Older mail is read; the newest few hundred are partly unread; some flagged/answered.
                system = SystemFlag.SEEN if number < count - 300 or flag_rng.random() < 0.5 else SystemFlag.NONE
                if flag_rng.random() < 0.03:
                    system |= SystemFlag.FLAGGED
                if flag_rng.random() < 0.1:
                    system |= SystemFlag.ANSWERED
                keywords = frozenset({"$Forwarded"}) if flag_rng.random() < 0.02 else frozenset()
                await store.append(inbox.id, data, Flags(system, keywords), when, enforce_quota=False)
                done[0] += 1
                if done[0] % 10_000 == 0:
                    print(f"  {done[0]} messages stored ({time.perf_counter() - started:.0f} s)", flush=True)

        await asyncio.gather(*(writer() for _ in range(16)))
        print(f"stored {count} messages in {time.perf_counter() - started:.0f} s; indexing for search ...", flush=True)
        while (pending := await store.search_pending_count()) > 0:
            print(f"  {pending} messages still to index", flush=True)
            await asyncio.sleep(10)
        print(f"all indexed after {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await store.close()
    (directory / BUILT_MARKER).write_text(f"{count}\n")


# --------------------------------------------------------------------------- a plain IMAP client


class Imap:
    """Just enough IMAP to time the server: send one command, read to its tagged answer."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT[0])
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.serial = 0
        self._read_until(b"\r\n")
        self.command(f'LOGIN "{ADDRESS}" "{PASSWORD}"')

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        end += len(marker)
        data, self.buffer = self.buffer[:end], self.buffer[end:]
        return data

    def command(self, text: str) -> tuple[float, bytes]:
        """(seconds from sending to the tagged answer, everything the server sent)."""
        self.serial += 1
        tag = b"s%d" % self.serial
        started = time.perf_counter()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        answer = b""
        while True:
            # Look for the tagged line without rescanning what was already read.
            piece = self._read_until(b"\r\n")
            answer += piece
            if piece.startswith(tag + b" "):
                break
        elapsed = time.perf_counter() - started
        if not piece.startswith(tag + b" OK"):
            raise RuntimeError(f"{text!r}: {piece!r}")
        return elapsed, answer

    def close(self) -> None:
        try:
            self.command("LOGOUT")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def _read_lines_fast(client: Imap, text: str) -> tuple[float, bytes]:
    """Like Imap.command, but reads big answers in large pieces (SEARCH of thousands of uids)."""
    client.serial += 1
    tag = b"s%d" % client.serial
    started = time.perf_counter()
    client.sock.sendall(tag + b" " + text.encode() + b"\r\n")
    data = client.buffer
    needle = b"\r\n" + tag + b" "
    while True:
        position = data.find(needle, max(0, len(data) - (1 << 21)))
        if position >= 0 and data.find(b"\r\n", position + 2) >= 0:
            break
        if data.startswith(tag + b" ") and b"\r\n" in data:
            position = -2
            break
        chunk = client.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    end = data.find(b"\r\n", position + 2) + 2
    elapsed = time.perf_counter() - started
    answer, client.buffer = data[:end], data[end:]
    last = answer[position + 2:]
    if not last.startswith(tag + b" OK"):
        raise RuntimeError(f"{text!r}: {last!r}")
    return elapsed, answer


def search_hits(answer: bytes) -> int:
    for line in answer.split(b"\r\n"):
        if line.startswith(b"* SEARCH"):
            return len(line.split()) - 2
    return -1


def exists_of(answer: bytes) -> int:
    match = re.search(rb"\* (\d+) EXISTS", answer)
    return int(match.group(1)) if match else -1


# --------------------------------------------------------------------------- measuring


def figures(name: str, seconds: list[float], note: str = "") -> dict:
    ordered = sorted(seconds)
    median = statistics.median(ordered) * 1000
    p99 = quantile(ordered, 0.99) * 1000
    print(f"  {name:<38} n={len(ordered):<3} median {median:7.1f} ms   p99 {p99:7.1f} ms   {note}", flush=True)
    return {"n": len(ordered), "median_ms": median, "p99_ms": p99, "samples_ms": [x * 1000 for x in seconds]}


def start_server(config_file: Path, workers: int | None, src: Path | None = None):
    from tests.support.server import ServeProcess

    args = ["--config", str(config_file)]
    if workers:
        args += ["--workers", str(workers)]
    return ServeProcess(args, env={"PYTHONPATH": str(src.resolve() if src else REPO / "src")}, timeout=300)


def stop_server(server) -> None:
    import signal

    server.stop(signal.SIGTERM, timeout=120)


def pending_count(directory: Path) -> int:
    from postfach.config import load_config

    db_path = load_config(directory / "postfach.toml", environ={}).db_path
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM search_pending").fetchone()[0]
    except sqlite3.Error:
        return -1
    finally:
        conn.close()


def drop_snapshots(directory: Path) -> bool:
    """Remove the folder index snapshots (schema 8) of a stopped server; False if there are none."""
    from postfach.config import load_config

    conn = sqlite3.connect(load_config(directory / "postfach.toml", environ={}).db_path)
    try:
        return conn.execute("DELETE FROM folder_snapshots").rowcount > 0
    except sqlite3.OperationalError:
        return False  # an older schema: there is no such table
    finally:
        conn.commit()
        conn.close()


def bulk_deliver(host: str, port: int, count: int, clients: int = 8) -> float:
    """Append `count` new messages over IMAP from several connections; returns the seconds it took."""
    factory = MessageFactory(count, seed=99)
    messages = [factory.message(1_000_000 + n)[0] for n in range(count)]
    chunks = [messages[i::clients] for i in range(clients)]
    errors: list[BaseException] = []

    def one(chunk: list[bytes]) -> None:
        try:  # errors are raised again in the calling thread
            client = Imap(host, port)
            for data in chunk:
                client.serial += 1
                tag = b"s%d" % client.serial
                client.sock.sendall(tag + b" APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
                while not (line := client._read_until(b"\r\n")).startswith(tag + b" "):
                    pass
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(line)
            client.close()
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    started = time.perf_counter()
    threads = [threading.Thread(target=one, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def measure(directory: Path, options: argparse.Namespace) -> dict:
    config_file = write_scale_config(directory, options.workers)
    results: dict = {}
    host = "127.0.0.1"

    print(f"SELECT INBOX, cold (first after `postfach serve` started; {options.cold_runs} starts):", flush=True)
    cold = []
    for _ in range(options.cold_runs):
        server = start_server(config_file, options.workers, options.src)
        try:
            port = server.addresses["imap"].port
            client = Imap(host, port)
            elapsed, answer = client.command("SELECT INBOX")
            cold.append(elapsed)
            count = exists_of(answer)
            client.close()
        finally:
            stop_server(server)
    results["select_cold"] = figures("SELECT (cold)", cold, f"{count} EXISTS")
    if drop_snapshots(directory):
        # What the first SELECT after the upgrade to schema 8 costs: every row read once.
        server = start_server(config_file, options.workers, options.src)
        try:
            client = Imap(host, server.addresses["imap"].port)
            elapsed, _ = client.command("SELECT INBOX")
            client.close()
        finally:
            stop_server(server)
        results["select_cold_no_snapshot"] = figures("SELECT (cold, no index snapshot on disk)", [elapsed])

    server = start_server(config_file, options.workers, options.src)
    try:
        port = server.addresses["imap"].port
        # One SELECT that nobody measures: the cache of whichever process serves it is warm then.
        warm_up = Imap(host, port)
        warm_up.command("SELECT INBOX")
        print("SELECT INBOX, warm:", flush=True)
        warm_new, warm_same = [], []
        for _ in range(options.runs):
            client = Imap(host, port)
            warm_new.append(client.command("SELECT INBOX")[0])
            client.close()
        same = Imap(host, port)
        for _ in range(options.runs):
            warm_same.append(same.command("SELECT INBOX")[0])
        results["select_warm_new_connection"] = figures("SELECT (warm, new connection each)", warm_new)
        results["select_warm_same_connection"] = figures("SELECT (warm, same connection)", warm_same)
        results["search"] = run_searches(same, options.runs, "indexed", options.words)

        if options.bulk:
            print(f"bulk delivery of {options.bulk} messages over IMAP ...", flush=True)
            uidnext = int(re.search(rb"UIDNEXT (\d+)", same.command("SELECT INBOX")[1]).group(1))
            delivered: list[float] = []
            delivery = threading.Thread(target=lambda: delivered.append(bulk_deliver(host, port, options.bulk)))
            delivery.start()
            during, most_pending = [], 0
            while delivery.is_alive():  # SEARCH while the messages arrive and the index lags behind
                most_pending = max(most_pending, pending_count(directory))
                during.append(_read_lines_fast(same, f"UID SEARCH TEXT {RARE_WORD}")[0])
                time.sleep(0.2)
            delivery.join()
            if not delivered:
                raise SystemExit("the bulk delivery failed")
            seconds = delivered[0]
            results["search_during_bulk"] = figures(
                "UID SEARCH TEXT rare during the delivery", during, f"up to {most_pending} messages pending"
            )
            pending = pending_count(directory)
            print(f"  appended in {seconds:.1f} s; {pending} messages not yet in the search index", flush=True)
            results["bulk"] = {"messages": options.bulk, "seconds": seconds, "pending_after": pending}
            same.command("NOOP")
            results["search_pending"] = run_searches(same, max(3, options.runs // 4), "right after the bulk delivery",
                                                    options.words)
            print(f"  now {pending_count(directory)} messages not yet indexed", flush=True)
            elapsed, answer = same.command("SELECT INBOX")
            results["select_after_bulk"] = figures("SELECT right after the bulk delivery", [elapsed],
                                                   f"{exists_of(answer)} EXISTS")
            # The folder as it was, for the next run (the uids move on; the figures do not care).
            same.command(f"UID STORE {uidnext}:* +FLAGS.SILENT (\\Deleted)")
            same.command(f"UID EXPUNGE {uidnext}:*")
        same.close()
        warm_up.close()
    finally:
        stop_server(server)
    return results


SEARCHES = (  # (label, which word, command)
    ("SEARCH TEXT rare", "rare", f"SEARCH TEXT {RARE_WORD}"),
    ("UID SEARCH TEXT rare", "rare", f"UID SEARCH TEXT {RARE_WORD}"),
    ("SEARCH TEXT common", "common", f"SEARCH TEXT {COMMON_WORD}"),
    ("UID SEARCH TEXT common", "common", f"UID SEARCH TEXT {COMMON_WORD}"),
    ("SEARCH BODY common", "common", f"SEARCH BODY {COMMON_WORD}"),
    ("SEARCH TEXT common + UNSEEN", "common", f"SEARCH UNSEEN TEXT {COMMON_WORD}"),
)


def run_searches(client: Imap, runs: int, when: str, words: str) -> dict:
    print(f"SEARCH, {when}:", flush=True)
    found = {}
    for label, word, command in SEARCHES:
        if word not in words.split(","):
            continue
        timings, hits = [], -1
        for _ in range(runs):
            elapsed, answer = _read_lines_fast(client, command)
            timings.append(elapsed)
            hits = search_hits(answer)
        found[label] = figures(label, timings, f"{hits} hits")
        found[label]["hits"] = hits
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--data", type=Path, help="a directory to build in (kept) or reuse; default: a temporary one")
    parser.add_argument("--runs", type=int, default=20, help="samples per warm figure")
    parser.add_argument("--cold-runs", type=int, default=5, help="server starts for the cold SELECT figure")
    parser.add_argument("--bulk", type=int, default=2000, help="messages delivered for the pending-index figure")
    parser.add_argument("--workers", type=int, help="`postfach serve --workers N` (default: the configuration's)")
    parser.add_argument("--src", type=Path, help="serve with the postfach package under this directory "
                        "(another checkout's src/, to compare before and after)")
    parser.add_argument("--words", default="rare,common", help="which searches: rare, common or both")
    parser.add_argument("--timeout", type=float, default=120, help="seconds one command may take")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    options = parser.parse_args()
    TIMEOUT[0] = options.timeout
    if options.src:
        sys.path.insert(0, str(options.src.resolve()))  # before anything imports postfach

    def run(directory: Path) -> None:
        marker = directory / BUILT_MARKER
        if not marker.exists() or int(marker.read_text()) != options.messages:
            if (directory / "data").exists():
                raise SystemExit(f"{directory} holds an unfinished or different build; remove it first")
            print(f"building {options.messages} messages in {directory} ...", flush=True)
            asyncio.run(build(directory, options.messages))
        if options.build_only:
            return
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        results = measure(directory, options)
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
        if options.json:
            import json

            Path(options.json).write_text(json.dumps(results, indent=2) + "\n")

    if options.data:
        options.data.mkdir(parents=True, exist_ok=True)
        run(options.data.resolve())
    else:
        with tempfile.TemporaryDirectory() as scratch:
            run(Path(scratch))


if __name__ == "__main__":
    main()
