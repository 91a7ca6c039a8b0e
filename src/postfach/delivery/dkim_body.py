"""DKIM verification with the body read in chunks (RFC 6376), so a large message stays on disk.

dkimpy verifies a message held in memory, and holds several copies of its
body while it canonicalizes it. Here dkimpy gets the header section only and
checks the header signature (b=), while the body hash (bh=) is computed from
the body's chunks: `body_hash` canonicalizes as RFC 6376 §3.4.3 (simple) and
§3.4.4 (relaxed) say, honouring l= (§3.5).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Iterator

import dkim
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError, Relaxed

_WSP_RUN = re.compile(rb"[ \t]+")
_CRLF = b"\r\n"


def body_hash(chunks: Iterable[bytes], hasher: Callable, *, relaxed: bool, length: int | None = None) -> bytes:
    """The digest of the canonicalized body made of `chunks` (`length`: the l= tag, if any)."""
    digest = hasher()
    budget = length
    blank = 0  # empty lines not hashed yet: ignored if nothing but empty lines follows them
    hashed = False

    def emit(data: bytes) -> None:
        nonlocal budget, hashed
        hashed = True
        if budget is not None:
            data = data[:budget]
            budget -= len(data)
        digest.update(data)

    def lines(block: bytes) -> None:
        """Whole lines, CRLF-terminated."""
        nonlocal blank
        if relaxed:
            # §3.4.4: runs of WSP become one SP, and WSP at the end of a line goes.
            block = _WSP_RUN.sub(b" ", block).replace(b" \r\n", _CRLF)
        end = len(block.rstrip(_CRLF))
        if block[end:] != _CRLF * ((len(block) - end) // 2) or (len(block) - end) % 2:
            # A lone CR or LF just before the line ends: it is content, count true CRLFs only.
            end = len(block)
            while block.endswith(_CRLF, 0, end):
                end -= 2
        content = block[:end]
        empty_lines = (len(block) - end) // 2 - (1 if content else 0)
        if content:
            emit(_CRLF * blank + content + _CRLF)
            blank = 0
        blank += empty_lines

    rest = b""
    for chunk in chunks:
        data = rest + chunk
        cut = data.rfind(_CRLF)
        if cut < 0:
            rest = data
            continue
        lines(data[: cut + 2])
        rest = data[cut + 2:]
        if budget == 0:
            break
    if rest and budget != 0:
        # A body that does not end with CRLF gets one (§3.4.3, §3.4.4); WSP before it stays
        # (one SP in relaxed), as dkimpy, which signs our own mail, does it.
        emit(_CRLF * blank + (_WSP_RUN.sub(b" ", rest) if relaxed else rest) + _CRLF)
    if not hashed and not relaxed:
        emit(_CRLF)  # §3.4.3: an empty body is one CRLF in simple canonicalization
    return digest.digest()


class StreamingVerifier(dkim.DKIM):
    """dkimpy given only the header section; each signature's bh= is checked against the body
    that `body` yields (called once per signature checked), then dkimpy checks b=."""

    def __init__(self, header: bytes, body: Callable[[], Iterator[bytes]], **options) -> None:
        super().__init__(header, **options)
        self._body = body

    def verify_headerprep(self, idx: int = 0):  # noqa: D102 (dkimpy's hook)
        prep = super().verify_headerprep(idx)
        if not prep:
            return prep
        sig = prep[0]
        try:
            policy = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        except InvalidCanonicalizationPolicyError as error:
            raise dkim.MessageFormatError(f"invalid c= value: {error.args[0]}") from None
        try:
            length = int(sig[b"l"]) if b"l" in sig else None
            expected = base64.b64decode(re.sub(rb"\s+", b"", sig[b"bh"]), validate=True)
        except ValueError as error:
            raise dkim.MessageFormatError(str(error)) from None
        actual = body_hash(self._body(), dkim.HASH_ALGORITHMS[sig[b"a"]],
                           relaxed=policy.body_algorithm is Relaxed, length=length)
        if actual != expected:
            raise dkim.ValidationError("body hash mismatch")
        # Checked: dkimpy would compare bh= with the hash of the empty body it was given. The
        # header hash is made from the field as it stands, so bh= is still signed.
        del sig[b"bh"]
        return prep
