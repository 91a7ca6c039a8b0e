"""The rules every store keeps (store/base.py), checked through its public interface."""

import asyncio
import random
from datetime import datetime, timedelta, timezone

import pytest

from postfach.mime import ParsedMessage
from postfach.model import DEFAULT_FOLDERS, Flags, Forwarding, Mailbox, SpecialUse, SystemFlag, Vacation
from postfach.store.base import AlreadyExists, Conflict, FlagMode, NotFound, QuotaExceeded
from postfach.store.changes import FlagsChanged, FolderRenamed, MessagesAdded, MessagesExpunged
from tests.support.messages import make_message


async def append(store, folder, size=0, **options):
    return await store.append(folder.id, await store.store_blob(make_message(size)), **options)


def blob_files(store):
    return sorted(path.name for path in store.blobs.root.glob("??/*"))


# ---------------------------------------------------------------- accounts and folders


async def test_new_mailbox_gets_default_folders_with_special_use_all_subscribed(store, account):
    folders = {folder.name: folder for folder in await store.list_folders(account.id)}
    assert set(folders) == {name for name, _ in DEFAULT_FOLDERS}
    assert folders["Sent"].special_use is SpecialUse.SENT
    assert folders["Drafts"].special_use is SpecialUse.DRAFTS
    assert folders["Trash"].special_use is SpecialUse.TRASH
    assert folders["Junk"].special_use is SpecialUse.JUNK
    assert folders["Archive"].special_use is SpecialUse.ARCHIVE
    assert folders["INBOX"].special_use is None
    assert all(folder.subscribed for folder in folders.values())
    assert len({folder.uidvalidity for folder in folders.values()}) == len(folders)


async def test_duplicate_and_missing_records_are_typed_errors(store, account):
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.com")
    with pytest.raises(AlreadyExists):
        await store.add_account("alice@example.com", "h", 10 << 20)
    with pytest.raises(NotFound, match="not hosted"):
        await store.add_account("bob@elsewhere.org", "h", 10 << 20)
    with pytest.raises(NotFound):
        await store.remove_account("nobody@example.com")
    with pytest.raises(Conflict, match="still has 1 mailbox"):
        await store.remove_domain("example.com")
    assert await store.get_account("alice@example.com") == account


async def test_alias_and_mailbox_cannot_share_an_address(store, account):
    await store.add_alias("info@example.com", "alice@example.com")
    with pytest.raises(Conflict):
        await store.add_account("info@example.com", "h", 10 << 20)
    with pytest.raises(Conflict):
        await store.add_alias("alice@example.com", "someone@else.org")
    await store.add_alias("@example.com", "alice@example.com")
    aliases = await store.list_aliases("example.com")
    assert [(alias.source, alias.is_catch_all) for alias in aliases] == [
        ("@example.com", True),
        ("info@example.com", False),
    ]


async def test_forwarding_and_vacation_round_trip(store, account):
    forwarding = Forwarding(("bob@elsewhere.org", "carol@elsewhere.org"), keep_copy=True)
    await store.set_forwarding(account.address, forwarding)
    assert await store.get_forwarding(account.address) == forwarding
    await store.set_forwarding(account.address, None)
    assert await store.get_forwarding(account.address) is None
    today = datetime.now().date()
    vacation = Vacation(today, today + timedelta(days=7), "Away", "Back next week.\n")
    await store.set_vacation(account.address, vacation)
    assert await store.get_vacation(account.address) == vacation


async def test_vacation_replies_once_per_period_and_forgets_when_set_again(store, account):
    other = await store.add_account("other@example.com", "h", 10**6)
    day = 86400
    assert await store.claim_vacation_reply(account.id, "Sender@Remote.example", 1000, 7 * day)
    assert not await store.claim_vacation_reply(account.id, "sender@remote.example", 1000 + 7 * day - 1, 7 * day)
    assert await store.claim_vacation_reply(other.id, "sender@remote.example", 1001, 7 * day)  # per account
    assert await store.claim_vacation_reply(account.id, "someone@remote.example", 1002, 7 * day)
    # A period after the reply: one more (and the period counts from this one).
    assert await store.claim_vacation_reply(account.id, "sender@remote.example", 1000 + 7 * day, 7 * day)
    assert not await store.claim_vacation_reply(account.id, "sender@remote.example", 1000 + 8 * day, 7 * day)
    today = datetime.now().date()
    await store.set_vacation(account.address, Vacation(today, today, "Away", "Back soon.\n"))
    assert await store.claim_vacation_reply(account.id, "sender@remote.example", 1000 + 8 * day, 7 * day)
    assert not await store.claim_vacation_reply(other.id, "sender@remote.example", 1002, 7 * day)


async def test_a_forgotten_vacation_reply_is_claimed_again_and_a_later_claim_stays(store, account):
    day = 86400
    assert await store.claim_vacation_reply(account.id, "Sender@Remote.example", 1000, 7 * day)
    await store.forget_vacation_reply(account.id, "sender@remote.example", 1000)
    assert await store.claim_vacation_reply(account.id, "sender@remote.example", 1005, 7 * day)
    await store.forget_vacation_reply(account.id, "sender@remote.example", 1000)  # not this claim's time
    assert not await store.claim_vacation_reply(account.id, "sender@remote.example", 1006, 7 * day)


async def test_folder_deleted_and_created_again_gets_a_new_uidvalidity(store, account):
    first = await store.create_folder(account.id, "Projects")
    await store.delete_folder(first.id)
    second = await store.create_folder(account.id, "Projects")
    assert second.uidvalidity > first.uidvalidity


async def test_rename_moves_children_and_inbox_stays(store, account, inbox):
    parent = await store.create_folder(account.id, "Work")
    child = await store.create_folder(account.id, "Work/2026")
    changes = []
    store.events.subscribe(account.id, changes.append)
    await store.rename_folder(parent.id, "Job")
    names = {folder.name for folder in await store.list_folders(account.id)}
    assert {"Job", "Job/2026"} <= names and not {"Work", "Work/2026"} & names
    assert (await store.get_folder_by_id(child.id)).name == "Job/2026"
    with pytest.raises(Conflict):
        await store.rename_folder(inbox.id, "Old")
    with pytest.raises(Conflict):
        await store.delete_folder(inbox.id)
    await asyncio.sleep(0.05)
    assert {change.new_name for change in changes if isinstance(change, FolderRenamed)} == {"Job", "Job/2026"}


# ---------------------------------------------------------------- UIDs and modseq


async def test_uids_strictly_increase_and_are_never_reused(store, inbox):
    uids = [(await append(store, inbox)).uid for _ in range(5)]
    assert uids == sorted(uids) and len(set(uids)) == 5
    await store.expunge(inbox.id, uids[-2:])
    later = (await append(store, inbox)).uid
    assert later > uids[-1]
    index = await store.load_index(inbox.id)
    assert index.uids == [*uids[:3], later]
    assert index.uidnext == later + 1


async def test_concurrent_appends_get_distinct_increasing_uids(store, inbox):
    results = await asyncio.gather(*(append(store, inbox) for _ in range(100)))
    uids = sorted(message.uid for message in results)
    assert uids == list(range(uids[0], uids[0] + 100))


async def test_modseq_increases_with_every_change(store, inbox):
    seen = [(await store.get_folder_by_id(inbox.id)).highestmodseq]

    def highest():
        return store.get_folder_by_id(inbox.id)

    first = await append(store, inbox)
    assert first.modseq > seen[-1]
    seen.append((await highest()).highestmodseq)
    assert seen[-1] == first.modseq
    second = await append(store, inbox)
    assert second.modseq > first.modseq
    changed = await store.set_flags(inbox.id, [first.uid], Flags(SystemFlag.SEEN), FlagMode.ADD)
    assert changed[0].modseq > second.modseq
    assert (await highest()).highestmodseq == changed[0].modseq
    # A STORE that changes nothing is no change: no new modseq.
    assert await store.set_flags(inbox.id, [first.uid], Flags(SystemFlag.SEEN), FlagMode.ADD) == []
    assert (await highest()).highestmodseq == changed[0].modseq
    await store.expunge(inbox.id, [second.uid])
    assert (await highest()).highestmodseq > changed[0].modseq
    index = await store.load_index(inbox.id)
    assert index.modseqs == [changed[0].modseq]


async def test_flag_modes_and_keywords(store, inbox):
    message = await append(store, inbox, flags=Flags(SystemFlag.DRAFT, frozenset({"$Label1"})))
    uid = message.uid
    await store.set_flags(inbox.id, [uid], Flags(SystemFlag.SEEN | SystemFlag.FLAGGED, frozenset({"Work"})), FlagMode.ADD)
    await store.set_flags(inbox.id, [uid], Flags(SystemFlag.DRAFT, frozenset({"$Label1"})), FlagMode.REMOVE)
    [stored] = await store.get_messages(inbox.id, [uid])
    assert stored.flags == Flags(SystemFlag.SEEN | SystemFlag.FLAGGED, frozenset({"Work"}))
    await store.set_flags(inbox.id, [uid], Flags(SystemFlag.ANSWERED), FlagMode.REPLACE)
    index = await store.load_index(inbox.id)
    assert index.system_flags == [SystemFlag.ANSWERED] and index.keywords == {}


async def test_internal_date_keeps_its_zone(store, inbox):
    zone = timezone(timedelta(hours=-7, minutes=-30))
    when = datetime(2024, 2, 29, 23, 59, 58, tzinfo=zone)
    message = await append(store, inbox, internal_date=when)
    [stored] = await store.get_messages(inbox.id, [message.uid])
    assert stored.internal_date == when and stored.internal_date.utcoffset() == zone.utcoffset(None)


@pytest.mark.parametrize("as_bytes", [True, False], ids=["bytes", "stored file"])
async def test_an_append_claims_recent_in_its_own_transaction(store, account, inbox, as_bytes):
    delivered = (await append(store, inbox)).uid  # not claimed by anyone yet
    data = make_message(100)
    message, claimed = await store.append_claiming_recent(
        inbox.id, data if as_bytes else await store.store_blob(data), Flags(SystemFlag.SEEN)
    )
    assert claimed == [delivered, message.uid] and message.flags == Flags(SystemFlag.SEEN)
    assert await store.read_blob(message.blob.sha256) == data
    assert await store.count_recent(inbox.id) == 0
    # Refused: nothing filed, nothing claimed.
    later = (await append(store, inbox)).uid
    await store.set_quota(account.address, 5 * 1024 * 1024)
    with pytest.raises(QuotaExceeded):
        await store.append_claiming_recent(inbox.id, make_message(6 * 1024 * 1024))
    assert await store.claim_recent(inbox.id) == [later]


# ---------------------------------------------------------------- quota


async def test_quota_is_enforced_and_a_refused_append_stores_nothing(store, account, inbox):
    await store.set_quota(account.address, 6 * 1024 * 1024)
    await append(store, inbox, size=5 * 1024 * 1024)
    before = await store.folder_status(inbox.id)
    with pytest.raises(QuotaExceeded) as refused:
        await append(store, inbox, size=2 * 1024 * 1024)
    assert "is full" in str(refused.value)
    assert await store.folder_status(inbox.id) == before
    # Moving to Trash must never fail on quota: the caller can say so.
    trash = await store.get_folder(account.id, "Trash")
    await append(store, trash, size=2 * 1024 * 1024, enforce_quota=False)


async def test_file_message_stores_once_and_each_copy_stands_alone(store, account, inbox):
    full = await store.add_account("full@example.com", "h", 6 * 1024 * 1024)
    gone = await store.add_account("gone@example.com", "h", 10**7)
    full_inbox = await store.get_folder(full.id, "INBOX")
    gone_inbox = await store.get_folder(gone.id, "INBOX")
    await append(store, full_inbox, size=5 * 1024 * 1024)
    await store.remove_account(gone.address)
    data = make_message(subject="for three", size=2 * 1024 * 1024)

    staged, outcomes = await store.file_message(data, [inbox.id, full_inbox.id, gone_inbox.id])

    filed, over_quota, missing = outcomes
    assert (filed.folder_id, filed.blob) == (inbox.id, staged.ref)
    assert isinstance(over_quota, QuotaExceeded) and isinstance(missing, NotFound)
    assert await store.read_blob(staged.ref.sha256) == data
    assert (await store.folder_status(inbox.id)).messages == 1
    assert (await store.folder_status(full_inbox.id)).messages == 1  # only what was there
    assert (await store.get_account(account.address)).used_bytes == len(data)


async def test_quota_accounting_is_exact_under_concurrent_appends_and_deletes(store, account, inbox):
    rng = random.Random(7)
    archive = await store.get_folder(account.id, "Archive")
    sizes = [rng.randrange(100, 20_000) for _ in range(120)]
    appended = await asyncio.gather(
        *(append(store, rng.choice([inbox, archive]), size=size) for size in sizes)
    )
    doomed = rng.sample(appended, 60)
    await asyncio.gather(
        *(store.expunge(message.folder_id, [message.uid]) for message in doomed),
        *(append(store, inbox, size=size) for size in sizes[:30]),
    )
    remaining = [m for folder in (inbox, archive) for m in await _all_messages(store, folder)]
    used = (await store.get_account(account.address)).used_bytes
    assert used == sum(message.size for message in remaining)
    assert len(remaining) == 120 - 60 + 30


async def _all_messages(store, folder):
    index = await store.load_index(folder.id)
    return await store.get_messages(folder.id, index.uids)


async def test_a_failing_write_does_not_take_its_batch_down(store, account, inbox):
    await store.set_quota(account.address, 5 * 1024 * 1024 + 50_000)
    results = await asyncio.gather(
        *(append(store, inbox, size=size) for size in [1000] * 20 + [6 * 1024 * 1024] + [1000] * 20),
        return_exceptions=True,
    )
    failures = [result for result in results if isinstance(result, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], QuotaExceeded)
    assert (await store.folder_status(inbox.id)).messages == 40


# ---------------------------------------------------------------- message files


async def test_one_file_for_many_recipients_and_it_goes_with_the_last_reference(store):
    await store.add_domain("example.com")
    inboxes = []
    for number in range(50):
        account = await store.add_account(f"user{number}@example.com", "h", 10 << 20)
        inboxes.append(await store.get_folder(account.id, "INBOX"))
    blob = await store.store_blob(make_message(3000))
    messages = await asyncio.gather(*(store.append(inbox.id, blob) for inbox in inboxes))
    assert blob_files(store) == [blob.ref.sha256]
    assert await store.read_blob(blob.ref.sha256) == await store.read_blob(messages[0].blob.sha256)
    for message in messages[:-1]:
        await store.expunge(message.folder_id, [message.uid])
    assert blob_files(store) == [blob.ref.sha256]
    await store.expunge(messages[-1].folder_id, [messages[-1].uid])
    assert blob_files(store) == []
    with pytest.raises(NotFound):
        await store.get_parsed(blob.ref.sha256)


async def test_removing_a_mailbox_releases_its_files_and_leaves_shared_ones(store, inbox, account):
    bob = await store.add_account("bob@example.com", "h", 10 << 20)
    bob_inbox = await store.get_folder(bob.id, "INBOX")
    shared = await store.store_blob(make_message())
    own = await store.store_blob(make_message())
    await store.append(inbox.id, shared)
    await store.append(inbox.id, own)
    await store.append(bob_inbox.id, shared)
    await store.remove_account(account.address)
    assert blob_files(store) == [shared.ref.sha256]
    assert await store.get_account(account.address) is None


async def test_the_same_content_stored_again_after_collection_is_written_anew(store, inbox):
    data = make_message()
    first = await store.append(inbox.id, await store.store_blob(data))
    await store.expunge(inbox.id, [first.uid])
    assert blob_files(store) == []
    again = await store.append(inbox.id, await store.store_blob(data))
    assert await store.read_blob(again.blob.sha256) == data


async def test_garbage_collection_removes_crash_leftovers(store, inbox):
    kept = await append(store, inbox)
    orphan = store.blobs.path("ab" * 32)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"written by an append that crashed before its commit")
    assert await store.collect_garbage() == 1
    assert blob_files(store) == [kept.blob.sha256]


async def test_parse_is_cached_with_the_file(store, inbox):
    data = b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nFrom: A <a@example.org>\r\n\r\nHallo\r\n"
    message = await store.append(inbox.id, await store.store_blob(data))
    parsed = await store.get_parsed(message.blob.sha256)
    assert "=?utf-8?q?Gr=C3=BC=C3=9Fe?=" in parsed


# ---------------------------------------------------------------- change events


async def test_changes_are_published_after_commit_and_only_for_committed_work(store, account, inbox):
    changes = []
    store.events.subscribe(account.id, changes.append)
    message = await append(store, inbox)
    await store.set_flags(inbox.id, [message.uid], Flags(SystemFlag.SEEN), FlagMode.ADD)
    await store.set_quota(account.address, 5 * 1024 * 1024)
    with pytest.raises(QuotaExceeded):
        await append(store, inbox, size=6 * 1024 * 1024)
    await store.expunge(inbox.id, [message.uid])
    assert [type(change) for change in changes] == [MessagesAdded, FlagsChanged, MessagesExpunged]
    assert all(change.folder_id == inbox.id and change.uids == (message.uid,) for change in changes)


async def test_changes_reach_only_the_subscribers_of_that_account(store, account, inbox):
    bob = await store.add_account("bob@example.com", "h", 10 << 20)
    alice_sees, bob_sees = [], []
    store.events.subscribe(account.id, alice_sees.append)
    subscription = store.events.subscribe(bob.id, bob_sees.append)
    await append(store, inbox)
    subscription.close()
    await append(store, await store.get_folder(bob.id, "INBOX"))
    assert len(alice_sees) == 1 and bob_sees == []


async def test_sizes_and_byte_ranges(store, inbox):
    small = await append(store, inbox)
    large = await store.append(inbox.id, make_message(300_000))
    assert await store.message_sizes(inbox.id) == ([small.uid, large.uid], [small.size, large.size])
    data = await store.read_blob(large.blob.sha256)
    assert len(data) == large.size
    assert await store.read_blob_range(large.blob.sha256, 1000, 70_000) == data[1000:70_000]
    assert await store.read_blob_range(large.blob.sha256, large.size - 10, large.size + 100) == data[-10:]
    assert await store.read_blob_range(large.blob.sha256, 5, 5) == b""
    assert await store.message_files(inbox.id) == (
        [small.uid, large.uid], [small.size, large.size], [small.blob.sha256, large.blob.sha256]
    )
    await store.expunge(inbox.id, [small.uid])
    assert await store.message_files(inbox.id) == ([large.uid], [large.size], [large.blob.sha256])


async def test_parsed_messages_are_read_once_and_then_kept(store, inbox):
    first, second = await append(store, inbox), await append(store, inbox)
    shas = [first.blob.sha256, second.blob.sha256, "0" * 64]  # the last: no such message
    parsed = await store.parsed_messages(shas)
    assert parsed == {sha: ParsedMessage.from_json(await store.get_parsed(sha)) for sha in shas[:2]}
    asked: list[list[str]] = []
    read = store.get_parsed_many

    async def counting(sha256s):
        asked.append(list(sha256s))
        return await read(asked[-1])

    store.get_parsed_many = counting
    assert await store.parsed_messages(shas) == parsed
    assert asked == [["0" * 64]]  # only what it could not know


# ---------------------------------------------------------------- IMAP message commands (issue 3)


async def test_expunge_deleted_removes_only_messages_flagged_deleted(store, inbox):
    keep, drop, other = [await append(store, inbox) for _ in range(3)]
    await store.set_flags(inbox.id, [drop.uid, other.uid], Flags(SystemFlag.DELETED), FlagMode.ADD)
    assert await store.expunge_deleted(inbox.id, [keep.uid, drop.uid]) == [drop.uid]
    assert await store.expunge_deleted(inbox.id) == [other.uid]
    assert (await store.load_index(inbox.id)).uids == [keep.uid]
    assert await store.expunged_since(inbox.id, keep.modseq) == [drop.uid, other.uid]


async def test_conditional_flag_change_reports_the_messages_changed_since(store, inbox):
    first, second = await append(store, inbox), await append(store, inbox)
    [touched] = await store.set_flags(inbox.id, [second.uid], Flags(SystemFlag.FLAGGED), FlagMode.ADD)
    changed, failed = await store.set_flags_if_unchanged(
        inbox.id, [first.uid, second.uid], Flags(SystemFlag.SEEN), FlagMode.ADD, unchanged_since=second.modseq
    )
    assert [m.uid for m in changed] == [first.uid] and failed == [second.uid]
    [stored] = await store.get_messages(inbox.id, [second.uid])
    assert stored.flags.system == SystemFlag.FLAGGED and stored.modseq == touched.modseq


async def test_copy_keeps_bytes_flags_and_dates_and_is_all_or_nothing(store, account, inbox):
    trash = await store.get_folder(account.id, "Trash")
    archive = await store.get_folder(account.id, "Archive")
    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    a = await append(store, inbox, flags=Flags(SystemFlag.SEEN, frozenset({"$Work"})), internal_date=when)
    b = await append(store, inbox, size=3 * 1024 * 1024)
    pairs = await store.copy_messages(inbox.id, [b.uid, a.uid, 999], archive.id)
    assert [source for source, _ in pairs] == [a.uid, b.uid]
    copies = await store.get_messages(archive.id, [new for _, new in pairs])
    assert copies[0].flags == a.flags and copies[0].internal_date == when and copies[0].blob == a.blob
    assert (await store.get_account(account.address)).used_bytes == 2 * (a.size + b.size)
    # Over quota: nothing is copied ... except into Trash, which never fails on quota.
    await store.set_quota(account.address, 5 * 1024 * 1024)
    with pytest.raises(QuotaExceeded):
        await store.copy_messages(inbox.id, [a.uid, b.uid], archive.id)
    assert len((await store.load_index(archive.id)).uids) == 2
    assert len(await store.copy_messages(inbox.id, [a.uid, b.uid], trash.id, enforce_quota=False)) == 2


async def test_move_is_one_change_in_each_folder(store, account, inbox):
    archive = await store.get_folder(account.id, "Archive")
    a, b = await append(store, inbox), await append(store, inbox)
    used = (await store.get_account(account.address)).used_bytes
    changes = []
    store.events.subscribe(account.id, changes.append)
    pairs = await store.move_messages(inbox.id, [a.uid, b.uid], archive.id)
    assert [source for source, _ in pairs] == [a.uid, b.uid]
    assert (await store.load_index(inbox.id)).uids == []
    assert (await store.load_index(archive.id)).uids == [new for _, new in pairs]
    assert (await store.get_account(account.address)).used_bytes == used
    assert [type(change) for change in changes] == [MessagesAdded, MessagesExpunged]
    assert await store.read_blob(a.blob.sha256)  # the file stays: the moved row refers to it


async def test_full_text_search_finds_substrings_in_decoded_bodies_and_headers(store, account, inbox):
    import base64

    body = base64.encodebytes("Grüße aus Köln, wir treffen uns um 10*2 Uhr\n".encode()).decode()
    data = (
        "Subject: =?utf-8?q?Sch=C3=B6ne_Gr=C3=BC=C3=9Fe?=\r\nFrom: Ann <ann@example.org>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body
    ).encode()
    found = await store.append(inbox.id, data)
    other = await append(store, inbox)
    assert await store.search_text(inbox.id, "KÖLN", body_only=True) == [found.uid]
    assert await store.search_text(inbox.id, "10*2", body_only=True) == [found.uid]
    assert await store.search_text(inbox.id, "schöne", body_only=True) == []
    assert await store.search_text(inbox.id, "schöne", body_only=False) == [found.uid]
    assert await store.search_text(inbox.id, "message", body_only=True) == [other.uid]
    # The same content in another folder is found there, and only there.
    archive = await store.get_folder(account.id, "Archive")
    await store.copy_messages(inbox.id, [found.uid], archive.id)
    assert len(await store.search_text(archive.id, "köln", body_only=True)) == 1
    await store.expunge(inbox.id, [found.uid])
    assert await store.search_text(inbox.id, "köln", body_only=True) == []


# ---------------------------------------------------------------- IMAP folder state


async def test_recent_is_claimed_once_and_counted_without_claiming(store, inbox):
    first = [(await append(store, inbox)).uid for _ in range(2)]
    assert await store.count_recent(inbox.id) == 2
    assert await store.count_recent(inbox.id) == 2  # counting claims nothing
    claims = await asyncio.gather(store.claim_recent(inbox.id), store.claim_recent(inbox.id))
    assert sorted(claims, key=len) == [[], first]  # exactly one claimer gets them
    assert await store.count_recent(inbox.id) == 0
    later = (await append(store, inbox)).uid
    await store.expunge(inbox.id, first[:1])
    assert await store.claim_recent(inbox.id) == [later]
    assert await store.claim_recent(inbox.id) == []
    with pytest.raises(NotFound):
        await store.claim_recent(999999)


async def test_expunged_since_lists_uids_by_the_modseq_of_their_removal(store, inbox):
    uids = [(await append(store, inbox)).uid for _ in range(4)]
    await store.expunge(inbox.id, [uids[0]])
    between = (await store.get_folder_by_id(inbox.id)).highestmodseq
    await store.expunge(inbox.id, [uids[2], uids[3]])
    assert await store.expunged_since(inbox.id, 0) == [uids[0], uids[2], uids[3]]
    assert await store.expunged_since(inbox.id, between) == [uids[2], uids[3]]
    assert await store.expunged_since(inbox.id, between + 1) == []


async def test_rename_inbox_moves_its_messages_and_leaves_it_empty(store, account, inbox):
    kept = [await append(store, inbox) for _ in range(3)]
    await store.set_flags(inbox.id, [kept[1].uid], Flags(SystemFlag.SEEN), FlagMode.ADD)
    used = (await store.get_account_by_id(account.id)).used_bytes
    changes = []
    store.events.subscribe(account.id, changes.append)
    moved_to = await store.rename_inbox(account.id, "Old Inbox")
    assert moved_to.name == "Old Inbox" and moved_to.uidnext == 4
    assert (await store.folder_status(inbox.id)).messages == 0
    assert (await store.get_folder(account.id, "INBOX")).id == inbox.id
    moved = await store.get_messages(moved_to.id, [1, 2, 3])
    assert [m.blob for m in moved] == [m.blob for m in kept]
    assert moved[1].flags.system == SystemFlag.SEEN
    assert (await store.get_account_by_id(account.id)).used_bytes == used
    assert await store.expunged_since(inbox.id, 0) == [m.uid for m in kept]
    assert await store.claim_recent(moved_to.id) == []  # moved, not new
    await asyncio.sleep(0.05)
    assert any(isinstance(c, MessagesAdded) and c.folder_id == moved_to.id for c in changes)
    assert any(isinstance(c, MessagesExpunged) and c.folder_id == inbox.id for c in changes)
    with pytest.raises(AlreadyExists):
        await store.rename_inbox(account.id, "Sent")
    assert (await store.folder_status(inbox.id)).messages == 0


# ---------------------------------------------------------------- outbound queue, DKIM keys, quota warnings


async def test_a_queued_message_keeps_its_file_until_no_recipient_is_pending(store, inbox):
    data = make_message(100)
    staged = await store.store_blob(data)
    entry = await store.enqueue("alice@example.com", ["x@remote.example", "y@remote.example"], staged, 1000)
    assert entry.pending == ("x@remote.example", "y@remote.example") and entry.attempts == 0
    assert entry.blob == staged.ref and entry.next_attempt.timestamp() == 1000
    assert await store.list_queue(due_before=999) == []
    assert [e.id for e in await store.list_queue(due_before=1000)] == [entry.id]
    assert await store.next_queue_attempt() == 1000

    after = await store.record_attempt(entry.id, {"x@remote.example": ("delivered", None),
                                                  "y@remote.example": ("pending", "451 later")}, 2000, "451 later")
    assert after.attempts == 1 and after.pending == ("y@remote.example",) and after.last_error == "451 later"
    assert after.next_attempt.timestamp() == 2000
    await store.collect_garbage()
    assert blob_files(store) == [staged.ref.sha256]  # still queued: the file stays
    assert await store.read_blob(staged.ref.sha256) == data

    assert await store.record_attempt(entry.id, {"y@remote.example": ("failed", "550 no")}, 3000) is None
    assert await store.get_queued(entry.id) is None and await store.list_queue() == []
    assert await store.next_queue_attempt() is None
    await store.collect_garbage()
    assert blob_files(store) == []
    with pytest.raises(NotFound):
        await store.record_attempt(entry.id, {}, 0)


async def test_a_file_shared_by_a_folder_and_the_queue_stays_while_either_holds_it(store, inbox):
    staged = await store.store_blob(make_message(10))
    await store.append(inbox.id, staged)
    entry = await store.enqueue("", ["x@remote.example"], staged)
    await store.expunge(inbox.id, [1])
    await store.collect_garbage()
    assert blob_files(store) == [staged.ref.sha256]
    await store.record_attempt(entry.id, {"x@remote.example": ("delivered", None)}, 0)
    await store.collect_garbage()
    assert blob_files(store) == []


async def test_dkim_key_per_domain_goes_with_the_domain(store):
    await store.add_domain("a.test")
    assert await store.get_dkim_key("a.test") is None
    await store.set_dkim_key("a.test", "s1", "PEM1")
    key = await store.set_dkim_key("a.test", "s2", "PEM2")
    assert await store.get_dkim_key("a.test") == key and key.selector == "s2"
    with pytest.raises(NotFound):
        await store.set_dkim_key("nowhere.test", "s", "PEM")
    await store.remove_domain("a.test")
    await store.add_domain("a.test")
    assert await store.get_dkim_key("a.test") is None


async def test_quota_warning_level_is_compare_and_set(store, account):
    assert await store.get_quota_warning(account.id) == 0
    assert await store.set_quota_warning(account.id, 80, only_if=0)
    assert not await store.set_quota_warning(account.id, 80, only_if=0)  # someone else warned first
    assert await store.get_quota_warning(account.id) == 80
    assert await store.set_quota_warning(account.id, 0)
    assert await store.get_quota_warning(account.id) == 0


async def test_parses_and_byte_ranges_of_many_messages_at_once(store, inbox):
    first = await append(store, inbox)
    second = await store.append(inbox.id, make_message(5000))
    parses = await store.get_parsed_many([first.blob.sha256, second.blob.sha256, "ff" * 32])
    assert set(parses) == {first.blob.sha256, second.blob.sha256}
    assert parses[first.blob.sha256] == await store.get_parsed(first.blob.sha256)
    data = await store.read_blob(second.blob.sha256)
    ranges = [(second.blob.sha256, 0, 10), (first.blob.sha256, 5, 5), (second.blob.sha256, 4990, 6000)]
    assert await store.read_blob_ranges(ranges) == [data[:10], b"", data[4990:6000]]


async def test_text_search_finds_messages_before_and_after_they_are_indexed(store, inbox):
    first = await store.append(inbox.id, b"Subject: Rechnung\r\n\r\nIhre Bestellung Nummer 4711\r\n")
    # At once: the message may not be indexed yet, and must be found all the same.
    assert await store.search_text(inbox.id, "BESTELLUNG", body_only=True) == [first.uid]
    assert await store.search_text(inbox.id, "rechnung", body_only=False) == [first.uid]
    assert await store.search_text(inbox.id, "rechnung", body_only=True) == []
    for _ in range(200):  # the writer indexes when idle
        if not await store.search_pending_count():
            break
        await asyncio.sleep(0.01)
    assert await store.search_pending_count() == 0
    assert await store.search_text(inbox.id, "nummer 47", body_only=True) == [first.uid]
    await store.expunge(inbox.id, [first.uid])
    assert await store.search_text(inbox.id, "nummer", body_only=True) == []


async def test_recipient_facts_in_one_read(store, account):
    inbox = await store.get_folder(account.id, "INBOX")
    facts = await store.recipient_facts(account.address)
    assert facts.domain_hosted and facts.forwarding is None
    assert facts.mailbox == Mailbox(account, inbox.id, 0, None)
    await store.set_forwarding(account.address, Forwarding(("x@elsewhere.org",), keep_copy=True))
    today = datetime.now().date()
    vacation = Vacation(today, today, "Away", "Back tomorrow.\n")
    await store.set_vacation(account.address, vacation)
    await store.set_quota_warning(account.id, 80)
    facts = await store.recipient_facts(account.address)
    assert facts.forwarding == Forwarding(("x@elsewhere.org",), True)
    assert facts.mailbox == Mailbox(account, inbox.id, 80, vacation)
    unknown = await store.recipient_facts("nobody@example.com")
    assert unknown.domain_hosted and unknown.mailbox is None and unknown.forwarding is None
    assert not (await store.recipient_facts("someone@elsewhere.org")).domain_hosted
