"""perf-acks.yaml: acknowledged changes start a new segment; a bad entry is a one-line error naming
the file, the entry and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UserError
from harness.history.acks import Ack, load_acks, segment_start, segment_starts, unknown_acks
from harness.history.record import HistoryRecord

GOOD = """\
- scenario: digits
  variant: int8
  metric: latency_p95_ms
  from_run: 20250301-020000-digits-1a2b
  reason: torch 2.13 is slower on int8 linear layers (#123)
- scenario: digits
  variant: "*"
  metric: "*"
  from-run: "20250310"
  reason: new runner image
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "perf-acks.yaml"
    path.write_text(text)
    return path


def test_entries_are_read_with_either_spelling_of_from_run(tmp_path: Path) -> None:
    acks = load_acks(write(tmp_path, GOOD))
    assert acks == [
        Ack(
            "digits",
            "int8",
            "latency_p95_ms",
            "20250301-020000-digits-1a2b",
            "torch 2.13 is slower on int8 linear layers (#123)",
        ),
        Ack("digits", "*", "*", "20250310", "new runner image"),
    ]
    assert acks[1].matches("digits", "fp32", "throughput_rps")
    assert not acks[0].matches("digits", "fp32", "latency_p95_ms")
    assert not acks[1].matches("other", "int8", "latency_p95_ms")


def test_no_file_by_default_means_no_acks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_acks(None) == []
    write(tmp_path, GOOD)
    assert len(load_acks(None)) == 2


def test_an_empty_file_has_no_acks(tmp_path: Path) -> None:
    assert load_acks(write(tmp_path, "# nothing acknowledged yet\n")) == []


def test_a_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such acknowledgements file"):
        load_acks(tmp_path / "perf-acks.yml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scenario: digits\n", "expected a YAML list of entries"),
        ("- just text\n", "entry 1 of 1: expected a mapping"),
        (
            "- {scenario: d, variant: v, metric: m, from_run: r, reason: x}\n"
            "- {scenario: d, variant: v, metric: m, reason: x}\n",
            "entry 2 of 2: from_run: required",
        ),
        (
            "- {scenario: d, variant: v, metric: m, from_run: r, reson: x}\n",
            "entry 1 of 1: unknown key 'reson'",
        ),
        (
            "- {scenario: d, variant: v, metric: m, from_run: 20250301, reason: x}\n",
            "from_run: expected a non-empty string, got 20250301",
        ),
        (
            "- {scenario: d, variant: v, metric: m, from_run: r, from-run: r, reason: x}\n",
            "from_run: given twice",
        ),
        (
            "- {scenario: '*', variant: v, metric: m, from_run: r, reason: x}\n",
            "scenario: '\\*' is only allowed for variant and metric",
        ),
        (
            "- {scenario: d, variant: v, metric: m, from_run: r, reason: ''}\n",
            "reason: expected a non-empty string",
        ),
        ("- [unclosed\n", "not valid YAML at line 2"),
    ],
)
def test_a_bad_entry_names_the_file_the_entry_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=expected) as info:
        load_acks(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def row(run_id: str, time: str, testbed: str = "ci") -> HistoryRecord:
    return HistoryRecord(run_id, time, "digits", "int8", "latency_p95_ms", 1.0, testbed)


def test_segment_starts_at_the_acked_run_or_at_its_time_on_another_testbed() -> None:
    here = [row(f"a{i}", f"2025-03-0{i + 1}T02:00:00+00:00") for i in range(5)]
    there = [row(f"b{i}", f"2025-03-0{i + 1}T05:00:00+00:00", "small") for i in range(5)]
    times = {r.run_id: r.time for r in [*here, *there]}
    ack = Ack("digits", "int8", "*", "a2", "accepted")
    assert segment_start(here, [ack], times) == 2
    assert segment_start(there, [ack], times) == 2  # b2 is the first run at or after a2's time
    older = Ack("digits", "*", "latency_p95_ms", "a1", "earlier")
    assert segment_starts(here, [ack, older], times) == [1, 2]
    assert segment_start(here, [ack, older], times) == 2
    assert segment_start(here, [Ack("digits", "int8", "*", "zzz", "typo")], times) == 0
    assert unknown_acks([ack, Ack("digits", "int8", "*", "zzz", "typo")], times) == [
        Ack("digits", "int8", "*", "zzz", "typo")
    ]
