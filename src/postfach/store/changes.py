"""Typed change events, published on the EventBus after the change is committed.

Every door that shows a folder (an IMAP session, webmail) subscribes to its
account and keeps its view current from these; none of them polls the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MessagesAdded:
    account_id: int
    folder_id: int
    uids: tuple[int, ...]
    modseq: int
    # The messages' flags, parallel to `uids` (SystemFlag bits), and the keywords of those that
    # have any, when the store gives them (empty otherwise): a folder index kept in memory
    # (store/index_cache.py) then follows the change without reading the store.
    flags: tuple[int, ...] = field(default=(), compare=False)
    keywords: tuple[tuple[int, frozenset[str]], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    account_id: int
    folder_id: int
    uids: tuple[int, ...]
    modseq: int
    flags: tuple[int, ...] = field(default=(), compare=False)  # as in MessagesAdded
    keywords: tuple[tuple[int, frozenset[str]], ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class MessagesExpunged:
    account_id: int
    folder_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class FolderCreated:
    account_id: int
    folder_id: int
    name: str


@dataclass(frozen=True, slots=True)
class FolderRenamed:
    account_id: int
    folder_id: int
    old_name: str
    new_name: str


@dataclass(frozen=True, slots=True)
class FolderDeleted:
    account_id: int
    folder_id: int
    name: str


Change = MessagesAdded | FlagsChanged | MessagesExpunged | FolderCreated | FolderRenamed | FolderDeleted
