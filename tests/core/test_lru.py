"""The bounded map behind the services' remembered records."""

from teaclave.core.lru import Lru


def test_putting_beyond_the_size_drops_the_least_recently_used() -> None:
    kept = Lru[str, int](2)
    kept.put("a", 1)
    kept.put("b", 2)
    assert kept.get("a") == 1  # now "b" is the least recently used
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), kept.get("c"), len(kept)) == (1, None, 3, 2)


def test_putting_a_kept_key_replaces_its_value_and_uses_it() -> None:
    kept = Lru[str, int](2)
    kept.put("a", 1)
    kept.put("b", 2)
    kept.put("a", 10)
    kept.put("c", 3)
    assert (kept.get("a"), kept.get("b"), len(kept)) == (10, None, 2)


def test_pop_and_clear_forget() -> None:
    kept = Lru[str, int](4)
    kept.put("a", 1)
    kept.put("b", 2)
    assert (kept.pop("a"), kept.pop("a"), kept.get("b")) == (1, None, 2)
    kept.clear()
    assert (kept.get("b"), len(kept)) == (None, 0)
