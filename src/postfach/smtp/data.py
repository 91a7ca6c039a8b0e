"""DATA as it arrives: in blocks into a spool, so a large message never sits in memory.

aiosmtpd's own DATA reads one line at a time, keeps every line in a list and
joins them at the end (the message is in memory twice, and a 10 KB message
costs some 140 reads). `SpoolingSMTP.smtp_DATA` reads as much as has arrived,
up to the end of the data, and hands it to `DataReceiver`, which works on
whole lines a block at a time: it undoes dot-stuffing, counts the size,
notes what makes the message unacceptable, and writes it on to a
`SpoolWriter` (up to 1 MiB in memory, the rest in a temporary file). The
reply to an unacceptable message is sent once the client has sent the end of
the data (RFC 5321 §4.2.5), and the connection stays usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from postfach.delivery.incoming import SpooledMessage, SpoolWriter
from postfach.delivery.recipients import Local, NotLocal
from postfach.smtp import replies
from postfach.smtp.replies import Reply

_FLUSH = 256 * 1024  # what is received is collected into blocks of about this size before being spooled


def has_bare_line_end(data: bytes) -> bool:
    """A CR or LF that is not part of a CRLF (counted in C: a regex scan cost more than the rest)."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


class DataEnvelope(Envelope):
    """aiosmtpd's envelope with what RCPT found for each recipient, and the message as
    `DataReceiver` spooled it."""

    def __init__(self) -> None:
        super().__init__()
        self.resolved: dict[str, Local | NotLocal] = {}
        self.message: bytes | SpooledMessage | None = None


class DataReceiver:
    """Takes the data as received, in pieces cut anywhere; works on the whole lines among them."""

    def __init__(self, spool: SpoolWriter, *, size_limit: int | None, line_limit: int) -> None:
        self._spool = spool
        self._size_limit = size_limit
        self._line_limit = line_limit  # octets of a line with its CRLF, as sent
        self._partial = b""  # the start of a line whose end has not come yet
        self._blocks: list[bytes] = []
        self._pending = 0
        self.size = 0
        self.refusal: Reply | None = None  # the first thing found wrong; the rest is discarded

    def feed(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        if self._partial:
            data = self._partial + data
        end = data.rfind(b"\r\n")
        self._partial = data[end + 2:] if end >= 0 else data
        if len(self._partial) >= self._line_limit:  # its CRLF will make it longer than allowed
            self._refuse(replies.LINE_TOO_LONG)
        elif end >= 0:
            self._lines(data[: end + 2] if self._partial else data)

    def _lines(self, block: bytes) -> None:
        """Whole lines, as sent (each ends with CRLF, the first starts a line)."""
        # RFC 5321 §2.3.8: CR and LF only together. Checked first: below, every LF ends a line.
        if has_bare_line_end(block):
            self._refuse(replies.BARE_LINE_END)
            return
        if len(block) > self._line_limit and max(map(len, block.split(b"\n"))) >= self._line_limit:
            self._refuse(replies.LINE_TOO_LONG)  # a line of more than line_limit octets with its LF
            return
        # RFC 5321 §4.5.2: a line that starts with a dot got one more from the client.
        block = block.replace(b"\n.", b"\n")
        if block[:1] == b".":
            block = block[1:]
        # RFC 1870: the size is that of the message, without the dots added for transfer.
        self.size += len(block)
        if self._size_limit and self.size > self._size_limit:
            self._refuse(replies.TOO_MUCH_DATA)
            return
        self._blocks.append(block)
        self._pending += len(block)
        if self._pending >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._blocks:
            self._spool.write(b"".join(self._blocks) if len(self._blocks) > 1 else self._blocks[0])
        self._blocks, self._pending = [], 0

    def _refuse(self, reply: Reply) -> None:
        self.refusal = reply
        self.discard()

    def finish(self) -> bytes | SpooledMessage | None:
        """The message after the final dot, or None when it is refused (see `refusal`)."""
        if self.refusal is None:
            assert not self._partial, "the end of data comes after a CRLF"
            self._flush()
            return self._spool.finish()
        return None

    def discard(self) -> None:
        self._partial, self._blocks, self._pending = b"", [], 0
        self._spool.discard()


async def receive_data(reader: asyncio.StreamReader, receiver: DataReceiver,
                       arrived: Callable[[], object] = lambda: None) -> None:
    """Read up to the line with the lone dot, handing everything before it to `receiver`; what
    follows (pipelined commands, RFC 2920) stays in `reader`. `arrived` is called as data
    comes in (RFC 5321 §4.5.3.2.5: the DATA time-out is per block, not for the whole message).

    Every end of data ends with ".CRLF", so the reader is asked for that: it hands over what
    it holds up to there, or all it holds (raising LimitOverrunError past its limit, which
    leaves the bytes to read). A ".CRLF" ends the data when a CRLF came just before it, in
    this piece or at the end of the one before (the DATA command's own, at first). A bare LF
    never ends a line here (RFC 5321 §2.3.8): it is refused with the message.
    """
    before = b"\r\n"  # the last two bytes read
    while True:
        try:
            data = await reader.readuntil(b".\r\n")
            ended = (before + data[-5:]).endswith(b"\r\n.\r\n")
        except asyncio.LimitOverrunError as error:
            data = await reader.readexactly(error.consumed)
            ended = False
        arrived()
        if ended:
            receiver.feed(data[:-3])
            return
        receiver.feed(data)
        before = (before + data[-2:])[-2:]


class SpoolingSMTP(SMTP):
    """aiosmtpd's SMTP with DATA received into a spool in `spool_dir` (see the module docstring).

    Everything but the reading of the data is aiosmtpd's: the checks before DATA are its
    own methods, and the handler's `handle_DATA` hook is called as aiosmtpd calls it, with the
    message in `envelope.message` (valid until the hook returns: a delivery that outlives it
    takes a `SpooledMessage.duplicate()`).
    """

    def __init__(self, handler, *, spool_dir: Path, **options) -> None:
        super().__init__(handler, **options)
        self._spool_dir = spool_dir

    def _create_envelope(self) -> DataEnvelope:
        return DataEnvelope()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        receiver = DataReceiver(SpoolWriter(self._spool_dir), size_limit=self.data_size_limit,
                                line_limit=self.line_length_limit)
        message = None
        try:
            await receive_data(self._reader, receiver, self._reset_timeout)
            message = receiver.finish()
            if message is None:
                assert receiver.refusal is not None
                status = str(receiver.refusal)
            else:
                self.envelope.message = message
                status = await self._call_handler_hook("DATA")
        finally:
            receiver.discard()
            if isinstance(message, SpooledMessage):
                message.close()
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
