import pytest

from postfach.sizes import SizeError, format_size, parse_size


@pytest.mark.parametrize(
    "text, size",
    [("5242880", 5 << 20), ("5M", 5 << 20), ("5MB", 5 << 20), ("5MiB", 5 << 20), ("5 mb", 5 << 20),
     ("2G", 2 << 30), ("1.5G", 3 << 29), ("512k", 512 << 10), ("1T", 1 << 40), ("0", 0)],
)
def test_sizes_as_people_write_them(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["5X", "", "M", "-5M", "5 MBB", "1e9", "five"])
def test_what_is_not_a_size(bad):
    with pytest.raises(SizeError, match="is not a size"):
        parse_size(bad)


def test_format():
    assert format_size(0) == "0 B"
    assert format_size(1023) == "1023 B"
    assert format_size(1536) == "1.5 KiB"
    assert format_size(5 << 20) == "5.0 MiB"
    assert format_size(3 << 40) == "3.0 TiB"
