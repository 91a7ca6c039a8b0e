"""Typed change events, published on the EventBus after the change is committed.

Every door that shows a folder (an IMAP session, webmail) subscribes to its
account and keeps its view current from these; none of them polls the store.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessagesAdded:
    account_id: int
    folder_id: int
    uids: tuple[int, ...]
    modseq: int


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    account_id: int
    folder_id: int
    uids: tuple[int, ...]
    modseq: int


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
