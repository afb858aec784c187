"""The record cache: own commits, reads that began before a change, watches, the bound."""

from teaclave.storage.api import Changes
from teaclave.storage.cache import RecordCache


def test_a_read_is_kept_unless_something_changed_since_it_began() -> None:
    cache = RecordCache[str](10)
    epoch = cache.epoch()
    cache.fill("user/a", "read", epoch)
    assert cache.get("user/a") == "read"
    stale = cache.epoch()  # a read of b begins ...
    cache.put("user/b", "committed", cache.epoch())  # ... this service commits b ...
    cache.fill("user/b", "read before the commit", stale)  # ... the read ends: dropped
    assert cache.get("user/b") == "committed"
    stale = cache.epoch()
    cache.forget(["user/c"])  # a watch saw a change (of any key)
    cache.fill("user/c", "read before the change", stale)
    assert cache.get("user/c") is None


def test_a_commit_overtaken_by_another_change_leaves_nothing_kept() -> None:
    """Two commits of one key, their answers in the other order: neither is kept."""
    cache = RecordCache[str](10)
    cache.fill("user/a", "v1", cache.epoch())
    first, second = cache.epoch(), cache.epoch()  # both commits begin
    cache.put("user/a", "v3", second)  # the later commit returns first
    cache.put("user/a", "v2", first)  # then the earlier one
    assert cache.get("user/a") is None  # read again: v3


def test_a_watch_forgets_its_keys_and_lost_changes_forget_everything() -> None:
    cache = RecordCache[str](10)
    for key in ("user/a", "user/b", "user/c"):
        cache.fill(key, key, cache.epoch())
    cache.changed(Changes(5, ("user/a", "user/z")))
    assert [cache.get(k) for k in ("user/a", "user/b", "user/c")] == [None, "user/b", "user/c"]
    cache.changed(Changes(6))  # nothing changed: nothing forgotten
    assert cache.get("user/b") == "user/b"
    cache.changed(Changes(7, lost=True))
    assert [cache.get(k) for k in ("user/b", "user/c")] == [None, None]


def test_the_least_recently_used_go_beyond_the_bound() -> None:
    cache = RecordCache[int](3)
    for number in range(3):
        cache.fill(f"user/{number}", number, cache.epoch())
    assert cache.get("user/0") == 0  # used: kept
    cache.put("user/3", 3, cache.epoch())
    assert [cache.get(f"user/{n}") for n in range(4)] == [0, None, 2, 3]
