"""The quick reading of MAIL FROM and RCPT TO paths gives what aiosmtpd's full parser gives."""

import types

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from postfach.smtp.paths import simple_path

_AIOSMTPD = types.SimpleNamespace(local_part_limit=0)  # all SMTP._getaddr looks at


def aiosmtpd_reads(arg: str):
    return SMTP._getaddr(_AIOSMTPD, arg)


_PIECES = st.sampled_from(["<", ">", "@", ".", " ", "\t", "a", "Z9", "+tag", "-", "_", "(c)", '"q"', "[1.2.3.4]",
                           "ä", ":", ",", "SIZE=10", "<>", "=", "\\"])


@settings(max_examples=2000, deadline=None)
@given(st.lists(_PIECES, max_size=14).map("".join))
def test_a_path_read_quickly_is_read_as_aiosmtpd_reads_it(arg):
    quick = simple_path(arg)
    if quick is not None:
        assert quick == aiosmtpd_reads(arg)


@pytest.mark.parametrize("arg, expected", [
    ("<user@example.com>", ("user@example.com", "")),
    ("<First.Last+tag@Sub.Example.COM> SIZE=1000 BODY=8BITMIME", ("First.Last+tag@Sub.Example.COM",
                                                                  "SIZE=1000 BODY=8BITMIME")),
    ("  <a@b.c>\t", ("a@b.c", "")),
])
def test_the_usual_paths_are_read_quickly(arg, expected):
    assert simple_path(arg) == expected == aiosmtpd_reads(arg)


@pytest.mark.parametrize("arg", ["<>", '<"quoted local"@example.com>', "<a@[192.0.2.1]>", "<@relay.example:a@b.c>",
                                 "<a..b@c.d>", "<a@b.c> (comment) SIZE=1", "<jörg@example.com>", "a@b.c", "<a@b.c"])
def test_everything_else_is_left_to_aiosmtpd(arg):
    assert simple_path(arg) is None
