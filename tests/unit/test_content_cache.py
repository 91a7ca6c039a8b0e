"""ContentCache: bounded, least recently used out first."""

from postfach.content_cache import ContentCache


def test_the_least_recently_used_entry_makes_room():
    cache: ContentCache[int] = ContentCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_putting_again_replaces_and_refreshes():
    cache: ContentCache[str] = ContentCache(2)
    cache.put("a", "old")
    cache.put("b", "b")
    cache.put("a", "new")
    cache.put("c", "c")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("new", None, "c")
