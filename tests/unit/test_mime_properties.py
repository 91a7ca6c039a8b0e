"""mime: properties over arbitrary bytes and over messages the standard library builds."""

from __future__ import annotations

import email
import email.policy
from email.encoders import encode_base64
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postfach.mime import BodyPart, ParsedMessage, parse_message, search_text
from postfach.mime.envelope import build_envelope
from postfach.mime.structure import StructureParser
from postfach.mime.text import preview
from tests.support.messages import NESTED_MIME

# --- invariants that hold for any input ----------------------------------------


def walk(part: BodyPart):
    yield part
    for child in part.parts:
        yield from walk(child)


def check_offsets(part: BodyPart, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.header_end <= part.body_end <= hi
    if part.parts and part.type == "multipart":
        previous_end = part.header_end
        for child in part.parts:
            assert child.header_start >= previous_end  # in order, no overlap
            check_offsets(child, part.header_end, part.body_end)
            previous_end = child.body_end
    elif part.parts:
        (child,) = part.parts
        assert (child.header_start, child.body_end) == (part.header_end, part.body_end)
        assert part.envelope is not None
        check_offsets(child, part.header_end, part.body_end)


def check_any(data: bytes) -> None:
    # The internals directly, so that parse_message's safety net cannot hide a bug.
    root, fields = StructureParser(data).parse()
    preview(data, root)
    parsed = parse_message(data)
    assert parsed == ParsedMessage(build_envelope(fields), root, parsed.preview)
    check_offsets(root, 0, len(data))
    assert ParsedMessage.from_json(parsed.to_json()) == parsed
    parsed.to_json().encode("utf-8")
    search_text(data, parsed).encode("utf-8")
    for section in [(1,), (1, 1), (2, 1, 3), (3, 2)]:
        found = parsed.part(section)
        assert found is None or isinstance(found, BodyPart)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes(data):
    check_any(data)


SEED = NESTED_MIME
FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b"--b", b"--b--", b"--c\r\n", b"--d", b":", b";", b" ", b"\t",
    b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n\r\n",
    b"\"", b"(", b"<", b">", b"=?", b"\xff", b"\x00", b"\r\n\r\n",
]


@st.composite
def mutated(draw):
    data = bytearray(SEED)
    for _ in range(draw(st.integers(0, 8))):
        pos = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "truncate"]))
        if action == "insert":
            data[pos:pos] = draw(st.sampled_from(FRAGMENTS) | st.binary(max_size=8))
        elif action == "delete":
            del data[pos:pos + draw(st.integers(1, 20))]
        else:
            del data[pos:]
    if draw(st.booleans()):
        data = bytearray(bytes(data).replace(b"\r\n", b"\n"))
    return bytes(data)


@settings(max_examples=400, deadline=None)
@given(mutated())
def test_mutated_messages(data):
    check_any(data)


# --- messages built by the standard library ----------------------------------------

TEXT = st.text(
    alphabet=st.sampled_from("abcxyz ABC 0123 .,:;-=?\t\n<>\"'äöüßé€"), max_size=120
)
ASCII_TEXT = st.text(alphabet=st.sampled_from("abc xyz ABC 0123 .,:;-=?\t\n<>\"'"), max_size=120)
NAMES = st.sampled_from(["a.txt", "Grüße.pdf", "report 2024.csv", "x"])


@st.composite
def text_part(draw):
    charset = draw(st.sampled_from(["us-ascii", "utf-8", "iso-8859-1"]))
    text = draw(ASCII_TEXT if charset == "us-ascii" else TEXT)
    if charset == "iso-8859-1":
        text = text.replace("€", "E")
    return MIMEText(text, draw(st.sampled_from(["plain", "html"])), charset)


@st.composite
def attachment(draw):
    payload = draw(st.binary(max_size=300))
    if draw(st.booleans()):
        part = MIMEApplication(payload, "octet-stream")
    else:
        part = MIMEBase("image", "png")
        part.set_payload(payload)
        encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=draw(NAMES))
    return part


def with_headers(message: Message, draw) -> Message:
    message["Subject"] = Header(draw(TEXT), "utf-8") if draw(st.booleans()) else draw(ASCII_TEXT).replace("\n", " ")
    message["From"] = draw(st.sampled_from(["a@example.com", "Ann <ann@example.com>", "=?utf-8?q?J=C3=BC?= <j@x>"]))
    message["To"] = draw(st.sampled_from(["b@example.com", "Team: x@y, z@w;", "undisclosed-recipients:;"]))
    return message


def tree(draw_leaf):
    def extend(children):
        multipart = st.builds(
            lambda subtype, parts: MIMEMultipart(subtype, _subparts=parts),
            st.sampled_from(["mixed", "alternative", "related"]),
            st.lists(children, min_size=1, max_size=4),
        )

        @st.composite
        def rfc822(draw):
            return MIMEMessage(with_headers(draw(children), draw))

        return multipart | rfc822()

    return st.recursive(draw_leaf, extend, max_leaves=8)


@st.composite
def stdlib_message(draw):
    message = with_headers(draw(tree(text_part() | attachment())), draw)
    # Fixed, distinct boundaries (the generator would pick random ones).
    for number, part in enumerate(message.walk()):
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"=_b{number}_=")
    linesep = draw(st.sampled_from(["\n", "\r\n"]))
    return message.as_bytes(policy=email.policy.compat32.clone(linesep=linesep))


def unfold(value: str) -> str:
    return value.replace("\r\n", "").replace("\n", "").strip()


def stdlib_walk(message: Message):
    yield message
    if message.is_multipart():
        for child in message.get_payload():
            yield from stdlib_walk(child)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stdlib_message())
def test_same_tree_as_the_standard_library(data):
    theirs = list(stdlib_walk(email.message_from_bytes(data, policy=email.policy.compat32)))
    parsed = parse_message(data)
    ours = list(walk(parsed.structure))
    assert [f"{p.type}/{p.subtype}" for p in ours] == [m.get_content_type() for m in theirs]
    for part, message in zip(ours, theirs):
        header_block = data[part.header_start:part.header_end]
        assert header_block.endswith((b"\n\n", b"\r\n\r\n"))
        assert email.message_from_bytes(header_block).items() == message.items()
        assert part.encoding == (message.get("Content-Transfer-Encoding") or "7bit").lower()
        if not message.is_multipart():
            payload = message.get_payload(decode=False).encode("ascii", "surrogateescape")
            assert data[part.header_end:part.body_end] == payload
        if part.type == "message":
            inner = message.get_payload(0)
            assert part.envelope.subject == unfold(inner["Subject"])
    assert parsed.envelope.subject == unfold(theirs[0]["Subject"])
    check_offsets(parsed.structure, 0, len(data))
    assert ParsedMessage.from_json(parsed.to_json()) == parsed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stdlib_message())
def test_text_parts_are_decoded_like_the_standard_library_does(data):
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    parsed = parse_message(data)
    text = search_text(data, parsed)
    for leaf in message.walk():
        if leaf.get_content_type() == "text/plain":
            decoded = leaf.get_payload(decode=True).decode(leaf.get_content_charset())
            for line in decoded.splitlines():
                assert line.strip() in text
