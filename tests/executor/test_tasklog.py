"""A task's log: when it is asked for, how it is bounded, lines and log records as entries."""

import logging

import pytest

from teaclave.executor.tasklog import (
    CUT,
    MAX_ENTRY_BYTES,
    LineWriter,
    LogHandler,
    LogLimits,
    TaskLog,
    capture,
    requested,
)


@pytest.mark.parametrize(
    ("arguments", "asked"),
    [
        ('{"save_log": "true"}', True),
        ('{"message": "hi", "save_log": "true"}', True),
        ('{"save_log": true}', False),  # a JSON true does not ask (reference §3.6)
        ('{"save_log": "false"}', False),
        ('{"save_log": "True"}', False),
        ('{"message": "save_log"}', False),
        ("{}", False),
        ("", False),
        ("[]", False),
        ("not json", False),
    ],
)
def test_asked_with_the_string_true(arguments: str, asked: bool) -> None:
    assert requested(arguments) is asked


def test_entries_within_the_limits_then_a_marker() -> None:
    log = TaskLog(LogLimits(max_lines=3, max_bytes=1000))
    for index in range(5):
        log.add(f"line {index}")
    log.skip(2)
    assert log.kept == ["line 0", "line 1", "line 2"]
    assert log.entries() == [
        "line 0",
        "line 1",
        "line 2",
        "[teaclave] log truncated: 4 more entries not kept (at most 3 entries, 1000 bytes)",
    ]


def test_the_byte_limit_keeps_a_prefix() -> None:
    log = TaskLog(LogLimits(max_lines=100, max_bytes=10))
    for entry in ["12345", "6789", "ab", "c"]:  # "ab" does not fit: neither does anything after
        log.add(entry)
    assert log.entries()[:2] == ["12345", "6789"]
    assert log.entries()[2].startswith("[teaclave] log truncated: 2 more entries not kept")
    assert log.skipped == 2


def test_nothing_left_out_means_no_marker() -> None:
    log = TaskLog(LogLimits(max_lines=2, max_bytes=100))
    log.add("one")
    log.add("two")
    assert log.entries() == ["one", "two"]


def test_a_long_entry_is_cut_to_valid_utf8() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1 << 20))
    log.add("é" * MAX_ENTRY_BYTES)
    log.add("bad \udcff surrogate")
    (cut, replaced) = log.entries()
    assert cut.endswith(CUT)
    assert len(cut.encode()) <= MAX_ENTRY_BYTES
    assert set(cut.removesuffix(CUT)) == {"é"}
    assert replaced == "bad ? surrogate"
    again = TaskLog(log.limits)
    again.add(cut)  # cutting is idempotent: the trusted side may cut again
    assert again.entries() == [cut]


def test_lines_are_entries_and_the_last_one_is_flushed() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1000))
    lines = LineWriter(log)
    lines.write("first\nsec")
    lines.write("ond\n\nthird")
    assert log.kept == ["first", "second", ""]
    lines.flush()
    assert log.kept == ["first", "second", "", "third"]
    lines.flush()  # nothing more
    assert log.kept == ["first", "second", "", "third"]


def test_byte_streams_are_utf8_split_anywhere() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1000))
    lines = LineWriter(log)
    encoded = "héllo\nwörld\n".encode()
    for index in range(len(encoded)):  # one byte at a time: characters split across writes
        lines.feed(encoded[index : index + 1])
    lines.feed(b"\xffend")
    lines.flush()
    assert log.kept == ["héllo", "wörld", "\ufffdend"]


def test_an_endless_line_is_held_bounded_and_cut() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1 << 20))
    lines = LineWriter(log)
    for _ in range(100):
        lines.write("x" * 1000)
    lines.write("\nnext\n")
    (cut, following) = log.kept
    assert cut == "x" * (MAX_ENTRY_BYTES - len(CUT.encode())) + CUT
    assert following == "next"


def test_records_are_teaclaves_form() -> None:
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1000))
    logger = logging.getLogger("test_tasklog.records")
    logger.propagate = False
    logger.addHandler(LogHandler(log))
    logger.warning("%d apples", 3)
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed")
    assert log.kept[0] == "[WARNING test_tasklog.records] 3 apples"
    assert log.kept[1].startswith("[ERROR test_tasklog.records] failed\nTraceback")
    assert log.kept[1].endswith("ValueError: bad")


def test_capture_sends_records_to_the_log_only(caplog: pytest.LogCaptureFixture) -> None:
    name = "test_tasklog.builtin"
    log = TaskLog(LogLimits(max_lines=10, max_bytes=1000))
    with caplog.at_level(logging.DEBUG), capture(name, log):
        logging.getLogger(f"{name}.child").info("kept")
        logging.getLogger(f"{name}.child").debug("below INFO")
    with caplog.at_level(logging.DEBUG), capture(name, None):
        logging.getLogger(f"{name}.child").warning("dropped")
    assert log.entries() == [f"[INFO {name}.child] kept"]
    assert caplog.records == []  # neither reached the process's own handlers
    logging.getLogger(f"{name}.child").warning("after")
    assert [r.getMessage() for r in caplog.records] == ["after"]  # restored
