"""bench/fuzz_*.py: a short bounded round of each fuzz target, with random bytes (no atheris needed)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
TARGETS = ["fuzz_imap_parser.py", "fuzz_pop3_parser.py", "fuzz_mime.py"]
SECONDS = 3
# Start-up, the round itself, and slack for a loaded machine; past it, the target hangs.
LIMIT = 60


def fuzz(script: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), "--random", "--seconds", str(SECONDS), "--artifacts", str(tmp_path), *args],
        capture_output=True, text=True, timeout=LIMIT, cwd=tmp_path, check=False,
    )


@pytest.mark.parametrize("target", TARGETS)
def test_a_short_round_finds_nothing(target, tmp_path):
    result = fuzz(BENCH / target, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no finding" in result.stdout
    assert int(result.stdout.split()[0]) > 100  # it really ran inputs
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("hang-*"))


@pytest.mark.parametrize(("body", "kind"), [("raise ValueError('bug')", "crash"), ("time.sleep(60)", "hang")])
def test_the_runner_reports_an_exception_or_a_hang_and_saves_the_input(tmp_path, body, kind):
    target = tmp_path / "fuzz_broken.py"
    target.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(BENCH)!r})\n"
        "from fuzzing import run\n"
        "def check(data):\n"
        f"    if len(data) > 20:\n        {body}\n"
        "run(check, tokens=[b'x'], seeds=[b'y' * 30])\n"
    )
    result = fuzz(target, tmp_path, "--hang-seconds", "1")
    assert result.returncode == 1
    assert f"FINDING ({kind})" in result.stderr
    (saved,) = tmp_path.glob(f"{kind}-*")
    replay = subprocess.run(
        [sys.executable, str(target), "--replay", str(saved), "--hang-seconds", "1", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=LIMIT, cwd=tmp_path, check=False,
    )
    assert replay.returncode == 1
