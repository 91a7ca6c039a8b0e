"""Message files: written whole, and a range read from the page cache without ever waiting
for the disk."""

import os

import pytest

from postfach.store.blobs import FileBlobStore

DATA = bytes(range(256)) * 1024  # 256 KB: many pages, so a range can be partly in memory


@pytest.fixture
def blobs(tmp_path):
    store = FileBlobStore(tmp_path / "blobs")
    yield store
    store.close()


def evict(blobs: FileBlobStore, sha256: str, start: int = 0, length: int = 0) -> None:
    """Drop the file's clean pages from the page cache, as memory pressure would."""
    fd = os.open(blobs.path(sha256), os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("start", "end"), [(0, 8192), (1000, 70_000), (len(DATA) - 10, len(DATA) + 100), (5, 5)])
def test_a_cached_range_reads_as_read_range_does(blobs, start, end):
    ref = blobs.write(DATA)
    assert blobs.read_range(ref.sha256, start, end) == DATA[start:end]  # now in the page cache
    assert blobs.read_range_if_cached(ref.sha256, start, end) == DATA[start:end]


def test_a_range_not_in_memory_is_left_to_a_thread(blobs):
    ref = blobs.write(DATA)
    evict(blobs, ref.sha256)
    assert blobs.read_range_if_cached(ref.sha256, 0, 4096) is None
    assert blobs.read_range(ref.sha256, 0, 4096) == DATA[:4096]
    assert blobs.read_range_if_cached(ref.sha256, 0, 4096) == DATA[:4096]


def test_a_range_whose_end_is_not_in_memory_is_not_read_half(blobs):
    ref = blobs.write(DATA)
    blobs.read_range(ref.sha256, 0, len(DATA))
    evict(blobs, ref.sha256, start=128 * 1024)
    # The first read stops where memory ends and starts the kernel's readahead; whether that
    # is done by the next read depends on the disk, so the whole range or none of it.
    assert blobs.read_range_if_cached(ref.sha256, 0, len(DATA)) in (None, DATA)
    assert blobs.read_range_if_cached(ref.sha256, 0, 64 * 1024) == DATA[: 64 * 1024]


def test_a_missing_file_is_an_error_not_a_miss(blobs):
    with pytest.raises(FileNotFoundError):
        blobs.read_range_if_cached("0" * 64, 0, 10)


def test_a_write_the_kernel_takes_in_parts_is_stored_whole(blobs, monkeypatch):
    real_write = os.write
    calls = []

    def short_write(fd, data):  # as a file system nearly full may: less than asked, not an error
        calls.append(len(data))
        return real_write(fd, bytes(data[:10_000]))

    monkeypatch.setattr("postfach.store.blobs.os.write", short_write)
    ref = blobs.write(DATA)
    monkeypatch.undo()
    assert len(calls) == -(-len(DATA) // 10_000)
    assert blobs.read(ref.sha256) == DATA and ref.size == len(DATA)
