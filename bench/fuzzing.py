"""Running a fuzz target for a set time: atheris (coverage-guided) when installed, else random bytes.

A target module defines `check(data: bytes) -> None`, which raises when a property fails, and
calls `run(check, tokens=..., seeds=...)` from its `__main__` block:

    .venv/bin/python bench/fuzz_pop3_parser.py --seconds 60           # atheris if installed
    .venv/bin/python bench/fuzz_pop3_parser.py --seconds 5 --random   # random bytes, no atheris
    .venv/bin/python bench/fuzz_pop3_parser.py --replay crash-1a2b... # one saved input again

Any exception out of `check` is a finding, and so is an input that runs longer than
`--hang-seconds`: the input is saved as `<artifacts>/crash-<sha1>` (or `hang-<sha1>`) and the
process exits 1. Exit 0 means the time ran out without a finding.

The random mode is no coverage-guided fuzzer: it builds inputs from the target's tokens, random
bytes and mutations of its seeds, so that it reaches past the first syntax check. The test suite
runs it for a few seconds (tests/unit/test_fuzz_targets.py); atheris is for longer rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

# src for postfach, the checkout for tests.support (the fuzz targets share the tests' seeds).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Check = Callable[[bytes], None]


class Hang(Exception):
    """One input ran longer than --hang-seconds."""


def run(check: Check, *, tokens: Sequence[bytes], seeds: Sequence[bytes] = (), argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--random", action="store_true", help="plain random bytes even if atheris is installed")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random mode (default: from the clock)")
    parser.add_argument("--hang-seconds", type=int, default=10, help="one input running longer is a hang")
    parser.add_argument("--artifacts", type=Path, default=Path("."), help="where findings are saved")
    parser.add_argument("--replay", type=Path, nargs="*", default=None, help="run these saved inputs and stop")
    args = parser.parse_args(argv)
    args.artifacts.mkdir(parents=True, exist_ok=True)
    if args.replay is not None:
        for path in args.replay:
            _run_one(check, path.read_bytes(), args)
        print(f"replayed {len(args.replay)} input(s): no finding")
        return
    if not args.random:
        try:
            import atheris
        except ImportError:
            print("atheris is not installed: fuzzing with random bytes", file=sys.stderr)
        else:
            _run_atheris(atheris, check, tokens, seeds, args)
            return
    _run_random(check, tokens, seeds, args)


def _run_one(check: Check, data: bytes, args: argparse.Namespace) -> None:
    def too_long(signum: int, frame: object) -> None:
        raise Hang(f"one input ran longer than {args.hang_seconds} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(args.hang_seconds)
    try:
        check(data)
    except BaseException as error:  # every exception is a finding, reported below
        signal.alarm(0)
        if isinstance(error, KeyboardInterrupt):
            raise
        kind = "hang" if isinstance(error, Hang) else "crash"
        path = args.artifacts / f"{kind}-{hashlib.sha1(data).hexdigest()}"
        path.write_bytes(data)
        traceback.print_exc()
        print(f"FINDING ({kind}) on a {len(data)}-byte input, saved as {path}", file=sys.stderr)
        sys.exit(1)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_random(check: Check, tokens: Sequence[bytes], seeds: Sequence[bytes], args: argparse.Namespace) -> None:
    seed = args.seed if args.seed is not None else time.time_ns() % (1 << 32)
    rng = random.Random(seed)
    deadline = time.monotonic() + args.seconds
    runs = 0
    while time.monotonic() < deadline:
        _run_one(check, random_input(rng, tokens, seeds), args)
        runs += 1
    print(f"{runs} random inputs in {args.seconds:g} s (seed {seed}): no finding")


def random_input(rng: random.Random, tokens: Sequence[bytes], seeds: Sequence[bytes]) -> bytes:
    """A token soup, or a seed with a few insertions, deletions, truncations and flipped bytes."""
    if seeds and rng.random() < 0.5:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(0, 8)):
            pos = rng.randint(0, len(data))
            action = rng.random()
            if action < 0.4:
                data[pos:pos] = rng.choice(tokens) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 8))
            elif action < 0.7:
                del data[pos : pos + rng.randint(1, 20)]
            elif action < 0.8:
                del data[pos:]
            elif data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
        return bytes(data)
    return b"".join(
        rng.choice(tokens) if rng.random() < 0.6 else rng.randbytes(rng.randint(0, 20))
        for _ in range(rng.randint(0, 60))
    )


def _run_atheris(atheris, check: Check, tokens: Sequence[bytes], seeds: Sequence[bytes], args) -> None:
    # Kept between rounds: the corpus atheris grows is where the next round starts.
    work = args.artifacts / f"{Path(sys.argv[0]).stem}-atheris"
    work.mkdir(exist_ok=True)
    dictionary = work / "tokens.dict"
    # libFuzzer's dictionary format: one quoted token a line, any byte as \xNN.
    dictionary.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in tokens))
    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    for number, seed in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(seed)
    atheris.instrument_all()  # coverage of everything imported, postfach included
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={max(1, round(args.seconds))}",
            f"-timeout={args.hang_seconds}",
            f"-artifact_prefix={args.artifacts.resolve()}/",
            f"-dict={dictionary}",
            str(corpus),
        ],
        check,
    )
    atheris.Fuzz()  # exits: 0 when the time ran out, non-zero with the input saved on a finding
