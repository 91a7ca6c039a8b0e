"""Recipient resolution: mailboxes, aliases, catch-alls, forwarding, loops, and who may send as whom.

Aliases and forwardings are written straight into the store, past provisioning's
loop checks, because the resolver must be safe on whatever the store holds.
"""

import pytest

from postfach.delivery.recipients import MAX_DEPTH, Local, Looping, Malformed, NotLocal, Resolver, Unknown
from postfach.model import Forwarding
from postfach.store.sqlite import SqliteStore

QUOTA = 50 * 1024 * 1024


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    await opened.add_domain("example.com")
    await opened.add_domain("example.org")
    for name in ("alice", "bob", "carol"):
        await opened.add_account(f"{name}@example.com", "not-a-real-hash", QUOTA)
    yield opened
    await opened.close()


async def mailboxes(store, address) -> set[str]:
    resolution = await Resolver(store).resolve(address)
    assert isinstance(resolution, Local), resolution
    return {mailbox.account.address for mailbox in resolution.mailboxes}


async def test_a_mailbox_resolves_to_itself_in_any_case(store):
    assert await mailboxes(store, "Alice@EXAMPLE.com") == {"alice@example.com"}


async def test_unknown_not_local_and_malformed(store):
    resolver = Resolver(store)
    assert await resolver.resolve("nobody@example.com") == Unknown("nobody@example.com")
    assert await resolver.resolve("someone@remote.example") == NotLocal("someone@remote.example")
    assert isinstance(await resolver.resolve("no at sign"), Malformed)


async def test_an_alias_with_several_targets_and_a_chain(store):
    await store.add_alias("team@example.com", "alice@example.com")
    await store.add_alias("team@example.com", "bob@example.com")
    await store.add_alias("office@example.org", "team@example.com")  # alias of an alias, across domains
    assert await mailboxes(store, "team@example.com") == {"alice@example.com", "bob@example.com"}
    assert await mailboxes(store, "office@example.org") == {"alice@example.com", "bob@example.com"}


async def test_the_same_mailbox_reached_twice_gets_one_copy(store):
    await store.add_alias("team@example.com", "alice@example.com")
    await store.add_alias("team@example.com", "sales@example.com")
    await store.add_alias("sales@example.com", "alice@example.com")
    resolution = await Resolver(store).resolve("team@example.com")
    assert [m.account.address for m in resolution.mailboxes] == ["alice@example.com"]


async def test_the_catch_all_takes_only_what_no_mailbox_or_alias_takes(store):
    await store.add_alias("sales@example.com", "bob@example.com")
    await store.add_alias("@example.com", "carol@example.com")
    assert await mailboxes(store, "alice@example.com") == {"alice@example.com"}
    assert await mailboxes(store, "sales@example.com") == {"bob@example.com"}
    assert await mailboxes(store, "anything@example.com") == {"carol@example.com"}
    # Another domain's catch-all does not apply.
    assert await Resolver(store).resolve("anything@example.org") == Unknown("anything@example.org")


async def test_forwarding_without_and_with_a_copy(store):
    await store.set_forwarding("alice@example.com", Forwarding(("bob@example.com", "x@remote.example"), False))
    resolution = await Resolver(store).resolve("alice@example.com")
    assert [m.account.address for m in resolution.mailboxes] == ["bob@example.com"]
    assert resolution.remote == ("x@remote.example",)
    await store.set_forwarding("alice@example.com", Forwarding(("bob@example.com",), True))
    assert await mailboxes(store, "alice@example.com") == {"alice@example.com", "bob@example.com"}


async def test_an_alias_to_a_remote_address_is_a_remote_target(store):
    await store.add_alias("ext@example.com", "friend@remote.example")
    assert await Resolver(store).resolve("ext@example.com") == Local("ext@example.com", (), ("friend@remote.example",))


async def test_an_alias_loop_resolves_to_looping(store):
    await store.add_alias("a@example.com", "b@example.com")
    await store.add_alias("b@example.com", "a@example.com")
    assert await Resolver(store).resolve("a@example.com") == Looping("a@example.com")


async def test_a_loop_beside_a_real_target_still_delivers(store):
    await store.add_alias("a@example.com", "b@example.com")
    await store.add_alias("a@example.com", "alice@example.com")
    await store.add_alias("b@example.com", "a@example.com")
    assert await mailboxes(store, "a@example.com") == {"alice@example.com"}


async def test_a_forwarding_loop_without_copies_is_looping_and_a_copy_ends_it(store):
    await store.set_forwarding("alice@example.com", Forwarding(("bob@example.com",), False))
    await store.set_forwarding("bob@example.com", Forwarding(("alice@example.com",), False))
    assert await Resolver(store).resolve("alice@example.com") == Looping("alice@example.com")
    await store.set_forwarding("bob@example.com", Forwarding(("alice@example.com",), True))
    assert await mailboxes(store, "alice@example.com") == {"bob@example.com"}


async def test_a_catch_all_loop_across_domains_ends(store):
    await store.add_alias("@example.com", "x@example.org")
    await store.add_alias("@example.org", "y@example.com")
    assert await Resolver(store).resolve("y@example.com") == Looping("y@example.com")


async def test_a_chain_deeper_than_the_limit_ends(store):
    hops = [f"hop{n}@example.com" for n in range(MAX_DEPTH + 2)]
    for source, target in zip(hops, hops[1:]):
        await store.add_alias(source, target)
    await store.add_alias(hops[-1], "alice@example.com")
    assert await Resolver(store).resolve(hops[0]) == Looping(hops[0])
    assert await mailboxes(store, hops[3]) == {"alice@example.com"}


async def test_who_may_send_as_whom(store):
    alice = await store.get_account("alice@example.com")
    await store.add_alias("info@example.com", "alice@example.com")
    await store.add_alias("sales@example.org", "info@example.com")
    await store.add_alias("@example.com", "alice@example.com")
    resolver = Resolver(store)
    assert await resolver.may_send_as(alice, "Alice@Example.com")
    assert await resolver.may_send_as(alice, "info@example.com")
    assert await resolver.may_send_as(alice, "sales@example.org")
    assert not await resolver.may_send_as(alice, "bob@example.com")
    assert not await resolver.may_send_as(alice, "random@example.com")  # only the catch-all leads there
    assert not await resolver.may_send_as(alice, "alice@remote.example")
    assert not await resolver.may_send_as(alice, "")
