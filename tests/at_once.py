"""Race tests: calls started at the same moment, one thread each, or one call in a thread."""

import threading
from collections.abc import Callable, Sequence


def at_once(calls: Sequence[Callable[[], object]]) -> list[Exception | None]:
    """Run every call in its own thread, all released together; each one's exception
    (None if it returned), in order."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Exception | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            calls[index]()
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def in_thread(
    fn: Callable[..., object], *args: object, within: float = 60.0
) -> Callable[[], object]:
    """Run ``fn(*args)`` in a thread; a function that joins it (waiting up to ``within``
    seconds) and returns its result."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)))
    thread.start()

    def join() -> object:
        thread.join(within)
        assert result, "the call did not return"
        return result[0]

    return join
