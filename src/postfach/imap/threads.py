"""RFC 5256 base subjects and the THREAD algorithms ORDEREDSUBJECT and REFERENCES (no I/O).

Input is one `ThreadInput` per message; output is the nested thread list in
the wire form of RFC 5256 §4 (``(2)(3 6 (4 23)(44 7 96))``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from postfach.mime.text import decode_header_text

_WSP = re.compile(r"\s+")
_TRAILER = re.compile(r"(?:\s|\(fwd\))+$", re.IGNORECASE)  # subj-trailer (RFC 5256 §5)
_BLOB = r"\[[^\[\]]*\]\s*"
_LEADER = re.compile(rf"^(?:(?:{_BLOB})*(?:re|fwd?)\s*(?:{_BLOB})?:\s*)", re.IGNORECASE)  # subj-refwd
_BLOB_START = re.compile(rf"^{_BLOB}")
_FWD = re.compile(r"^\[fwd:(.*)\]$", re.IGNORECASE | re.DOTALL)
_MSG_ID = re.compile(r"<[^<>\s]+>")


def base_subject(subject: str | None) -> tuple[str, bool]:
    """RFC 5256 §2.1: (base subject, whether it was a reply or forward)."""
    text = _WSP.sub(" ", decode_header_text(subject or "")).strip()  # step 1
    reply = False
    while True:
        # step 2: trailing "(fwd)" and white space
        trimmed = _TRAILER.sub("", text)
        reply = reply or trimmed != text.rstrip()
        text = trimmed
        while True:  # steps 3-5: leaders and blobs, until neither changes anything
            before = text
            m = _LEADER.match(text)
            if m:
                text = text[m.end():]
                reply = True
            m = _BLOB_START.match(text)
            if m and text[m.end():]:  # step 4: only when something is left
                text = text[m.end():]
            if text == before:
                break
        m = _FWD.match(text)  # step 6
        if not m:
            return text, reply
        text = m.group(1).strip()
        reply = True


@dataclass
class ThreadInput:
    seq_or_uid: int  # what is sent: a sequence number, or a UID for UID THREAD
    order: int  # the sequence number: ties are broken by it
    subject: str | None
    sent: float  # sent date (internal date when the Date: header is unusable), as a timestamp
    message_id: str | None
    references: list[str]  # References (or In-Reply-To when there is none), oldest first


@dataclass(eq=False)
class _Node:
    message: ThreadInput | None = None
    parent: _Node | None = None
    children: list[_Node] = field(default_factory=list)

    def key(self) -> tuple[float, int]:
        first = self if self.message is not None else (self.children[0] if self.children else None)
        if first is None or first.message is None:
            return (0.0, 0)
        return (first.message.sent, first.message.order)


def _by_date(message: ThreadInput) -> tuple[float, int]:
    return (message.sent, message.order)


def ordered_subject(messages: list[ThreadInput]) -> list[_Node]:
    """RFC 5256 §3 ORDEREDSUBJECT: one thread per base subject, the first message its parent."""
    groups: dict[str, list[ThreadInput]] = {}
    for message in sorted(messages, key=_by_date):
        groups.setdefault(base_subject(message.subject)[0].casefold(), []).append(message)
    roots = []
    for group in groups.values():
        root = _Node(group[0])
        root.children = [_Node(m, root) for m in group[1:]]
        roots.append(root)
    roots.sort(key=_Node.key)
    return roots


def references(messages: list[ThreadInput]) -> list[_Node]:
    """RFC 5256 §3 REFERENCES (the JWZ algorithm)."""
    table: dict[str, _Node] = {}

    def container(message_id: str) -> _Node:
        if message_id not in table:
            table[message_id] = _Node()
        return table[message_id]

    def is_ancestor(node: _Node, other: _Node) -> bool:
        while other is not None:
            if other is node:
                return True
            other = other.parent  # type: ignore[assignment]
        return False

    def link(parent: _Node, child: _Node) -> None:
        if child.parent is not None or child is parent or is_ancestor(child, parent):
            return
        child.parent = parent
        parent.children.append(child)

    for message in sorted(messages, key=lambda m: m.order):
        mid = message.message_id
        if not mid or (mid in table and table[mid].message is not None):
            mid = f"<dup-{message.order}@postfach>"  # step 1A: a missing or duplicate Message-ID
        node = container(mid)
        node.message = message
        refs = [container(ref) for ref in message.references if ref != mid]
        for parent, child in zip(refs, refs[1:]):  # step 1B
            link(parent, child)
        if node.parent is not None:  # step 1C: the last reference is the parent
            node.parent.children.remove(node)
            node.parent = None
        if refs and not is_ancestor(node, refs[-1]):
            link(refs[-1], node)
    roots = [node for node in table.values() if node.parent is None]  # step 2
    roots = _prune(roots, top=True)  # step 4
    _sort(roots)  # step 5
    return _group_by_subject(roots)  # step 6 (then 7: sorting again)


def _prune(nodes: list[_Node], top: bool) -> list[_Node]:
    out: list[_Node] = []
    for node in nodes:
        node.children = _prune(node.children, top=False)
        for child in node.children:
            child.parent = node
        if node.message is None:
            if not node.children:
                continue  # an empty container without children goes
            if not top or len(node.children) == 1:
                out.extend(node.children)  # its children take its place
                for child in node.children:
                    child.parent = node.parent
                continue
        out.append(node)
    return out


def _sort(nodes: list[_Node]) -> None:
    for node in nodes:
        _sort(node.children)
    nodes.sort(key=_Node.key)


def _subject_of(node: _Node) -> ThreadInput | None:
    return node.message if node.message is not None else (node.children[0].message if node.children else None)


def _group_by_subject(roots: list[_Node]) -> list[_Node]:
    """Step 6: roots with the same base subject are merged (replies under the original)."""
    by_subject: dict[str, _Node] = {}
    for root in roots:
        message = _subject_of(root)
        if message is None:
            continue
        subject = base_subject(message.subject)[0].casefold()
        if subject and subject not in by_subject:
            by_subject[subject] = root
    out: list[_Node] = []
    for root in roots:
        message = _subject_of(root)
        subject = base_subject(message.subject)[0].casefold() if message else ""
        other = by_subject.get(subject)
        if not subject or other is None or other is root:
            out.append(root)
            continue
        reply = message is not None and base_subject(message.subject)[1]
        other_reply = (m := _subject_of(other)) is not None and base_subject(m.subject)[1]
        if other.message is None and root.message is None:
            other.children.extend(root.children)
        elif other.message is None:
            other.children.append(root)
        elif root.message is None:
            root.children.append(other)
            by_subject[subject] = root
            out = [root if node is other else node for node in out]
        elif reply and not other_reply:
            other.children.append(root)
        elif other_reply and not reply:
            root.children.append(other)
            by_subject[subject] = root
            out = [root if node is other else node for node in out]
        else:
            dummy = _Node(None, None, [other, root])
            by_subject[subject] = dummy
            out = [dummy if node is other else node for node in out]
    _sort(out)
    return out


def format_threads(roots: list[_Node]) -> str:
    """The thread-list of a THREAD response: ``(1 2 (3)(4 5))(6)``."""
    return "".join(_thread(root) for root in roots)


def _thread(node: _Node) -> str:
    if node.message is None:  # a dummy at the top: thread-nested alone
        return "(" + "".join(_thread(child) for child in node.children) + ")"
    parts: list[str] = []
    while True:
        parts.append(str(node.message.seq_or_uid))
        if len(node.children) == 1 and node.children[0].message is not None:
            node = node.children[0]
            continue
        break
    nested = "".join(_thread(child) for child in node.children)
    return "(" + " ".join(parts) + (" " + nested if nested else "") + ")"


def reference_ids(references_header: str | None, in_reply_to: str | None) -> list[str]:
    """Message-IDs from References, or the first from In-Reply-To when there is no References."""
    found = _MSG_ID.findall(references_header or "")
    if not found and in_reply_to:
        found = _MSG_ID.findall(in_reply_to)[:1]
    return found


def message_id(value: str | None) -> str | None:
    found = _MSG_ID.findall(value or "")
    return found[0] if found else None
