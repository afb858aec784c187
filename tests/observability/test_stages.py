"""A task process's stage report: recorded by nesting, encoded, decoded strictly."""

import json

import pytest

from teaclave.observability.stages import MAX_STAGES, Report, recording, stage


def test_stages_nest_and_record_errors() -> None:
    with recording() as report:
        with stage("fetch_inputs"):
            with stage("fetch_input", schema="aes-gcm-128"):
                pass
            with stage("fetch_input", schema="raw"):
                pass
        with pytest.raises(KeyError), stage("run"):
            raise KeyError("x")
    rows = [(s.name, s.parent, s.error, s.attributes) for s in report.stages]
    assert rows == [
        ("fetch_inputs", -1, "", {}),
        ("fetch_input", 0, "", {"schema": "aes-gcm-128"}),
        ("fetch_input", 0, "", {"schema": "raw"}),
        ("run", -1, "KeyError", {}),
    ]
    assert all(report.began <= s.start <= s.end for s in report.stages)
    assert Report.decode(report.encode()) == report


def test_outside_recording_a_stage_records_nothing() -> None:
    with stage("run"):
        pass
    with recording() as report:
        pass
    assert report.stages == []


def test_a_report_keeps_at_most_max_stages() -> None:
    with recording() as report:
        for _ in range(MAX_STAGES + 5):
            with stage("fetch_input"):
                pass
    assert len(report.stages) == MAX_STAGES


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"{}",
        json.dumps({"began": 1, "stages": [["run", 0, 1, 2, "", {}]]}).encode(),  # own parent
        json.dumps({"began": 1, "stages": [["run", -2, 1, 2, "", {}]]}).encode(),
        json.dumps({"began": 1, "stages": [["run", -1, 1, 2, "", {"a": [1]}]]}).encode(),
        json.dumps({"began": 1, "stages": [["run", -1, 1]]}).encode(),
        json.dumps({"began": "x", "stages": []}).encode(),
    ],
)
def test_malformed_reports_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed stage report"):
        Report.decode(data)
