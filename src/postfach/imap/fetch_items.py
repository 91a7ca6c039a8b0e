"""FETCH data items as requested (RFC 9051 §6.4.5, RFC 3501 §6.4.5).

Macros (ALL, FAST, FULL) are expanded by the parser. RFC822, RFC822.HEADER
and RFC822.TEXT stay themselves: they answer under their own names, and
RFC822.HEADER does not set \\Seen. ``label()`` is the name the answer uses
(RFC 9051 §7.5.2: BODY.PEEK answers as BODY, a partial as ``<origin>``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Items without arguments, upper case as they appear in requests and answers.
SIMPLE_ITEMS = frozenset({
    "BODY", "BODYSTRUCTURE", "ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER",
    "RFC822.SIZE", "RFC822.TEXT", "UID", "MODSEQ", "EMAILID", "THREADID", "SAVEDATE",
})

MACROS: dict[str, tuple[str, ...]] = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}


@dataclass(frozen=True, slots=True)
class FetchItem:
    """An item without arguments: one of ``SIMPLE_ITEMS``."""

    name: str

    def label(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Section:
    """``[2.1.HEADER.FIELDS (From To)]``: part numbers, then an optional text part.

    ``text`` is None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"
    or "MIME" (MIME only after a part number); ``fields`` are the header
    names of HEADER.FIELDS(.NOT), as the client wrote them.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def label(self) -> str:
        out = ".".join(str(n) for n in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
            out += " (" + " ".join(_field_label(f) for f in self.fields) + ")"
        return out


def _field_label(name: str) -> str:
    # header-fld-name is an astring; names are printable ASCII without specials
    # in practice, but quote anything that is not a plain atom.
    if name and all(0x21 <= ord(c) <= 0x7E and c not in '(){%*"\\]' for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FetchBody:
    """BODY[...], BODY.PEEK[...], BINARY[...], BINARY.PEEK[...] with an optional partial.

    ``partial`` is (offset, length) as requested.
    """

    section: Section = Section()
    partial: tuple[int, int] | None = None
    peek: bool = False
    binary: bool = False

    def label(self) -> str:
        name = "BINARY" if self.binary else "BODY"
        origin = "" if self.partial is None else f"<{self.partial[0]}>"
        return f"{name}[{self.section.label()}]{origin}"


@dataclass(frozen=True, slots=True)
class FetchBinarySize:
    """BINARY.SIZE[part] (RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()

    def label(self) -> str:
        return "BINARY.SIZE[" + ".".join(str(n) for n in self.part) + "]"


@dataclass(frozen=True, slots=True)
class FetchPreview:
    """PREVIEW, or PREVIEW (LAZY) (RFC 8970 §3)."""

    lazy: bool = False

    def label(self) -> str:
        return "PREVIEW"


FetchAttr = FetchItem | FetchBody | FetchBinarySize | FetchPreview
