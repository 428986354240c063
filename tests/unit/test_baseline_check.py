"""A corrupt baseline is caught by `FileBaselineStore.check` before measuring, in one clear line."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.baselines.store import BaselineSnapshot, FileBaselineStore
from harness.errors import UserError

ENV = {"cpu_model": "Test CPU", "logical_cores": 2}


@pytest.fixture
def store(tmp_path: Path) -> FileBaselineStore:
    return FileBaselineStore(tmp_path / "baselines")


def _record_valid(store: FileBaselineStore) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50)
    dist = {
        "latencies_ms": rng.lognormal(1.0, 0.3, 500),
        "window_latencies": {"latency_p95_ms": [1.0, 1.1, 0.9]},
        "predictions": labels,
        "labels": labels,
    }
    metrics = {"int8": {"accuracy": 0.97, "latency_p95_ms": 2.0}}
    return store.record("d", "fp", ENV, "r1", metrics, configs={"int8": "c1"}, distributions={"int8": dist})


def _variant(doc: dict[str, Any]) -> dict[str, Any]:
    variant: dict[str, Any] = doc["environments"]["fp"]["variants"]["int8"]
    return variant


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        target = _variant(doc)
        *parents, last = key.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


# (edit of a valid document, what the message must say after "variant 'int8': ")
VARIANT_DEFECTS = [
    (_set("metrics.accuracy", "0.97"), r"metrics\.accuracy is the text '0\.97'; expected a finite number"),
    (_set("metrics.accuracy", None), r"metrics\.accuracy is null; expected a finite number"),
    (_set("metrics.accuracy", True), r"metrics\.accuracy is true; expected a finite number"),
    (
        _set("metrics.latency_p95_ms", [2.0]),
        r"metrics\.latency_p95_ms is a list of 1; expected a finite number",
    ),
    (_set("metrics", [0.97]), r"metrics is a list of 1; expected an object"),
    (_set("config", 3), r"config is 3; expected text"),
    (
        _set("latency_histogram", "HISTFgarbage"),
        r"latency_histogram is the text 'HISTFgarbage'; .*HdrHistogram",
    ),
    (_set("latency_histogram", 12), r"latency_histogram is 12; expected text"),
    (_set("latency_windows.latency_p95_ms", [1.0, "x"]), r"latency_windows\.latency_p95_ms is a list of 2"),
    (_set("latency_windows.latency_p95_ms", [1.0, -1.0]), r"latency_windows\.latency_p95_ms .*non-negative"),
    (_set("latency_windows", [1.0]), r"latency_windows is a list of 1; expected an object"),
    (_set("predictions.values", "12x4"), r"predictions\.values is the text '12x4'; .*not digits"),
    (_set("predictions.encoding", "hex"), r"predictions\.values .*'encoding' \('digits' or 'csv'\)"),
    (
        _set("predictions.labels_fingerprint", None),
        r"predictions\.labels_fingerprint is null; expected 16 hex",
    ),
    (_set("predictions", "0123"), r"predictions is the text '0123'; expected an object"),
]


@pytest.mark.parametrize(("edit", "message"), VARIANT_DEFECTS)
def test_check_refuses_a_corrupt_variant_naming_file_environment_variant_and_key(store, edit, message):
    path = _record_valid(store)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as caught:
        store.check("d")
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"baseline file {path}: environment 'fp', variant 'int8': ")
    assert re.search(message, text), text
    assert text.endswith("fix or delete it (it is never overwritten automatically)")


@pytest.mark.parametrize(
    ("literal", "shown"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e999", "Infinity")],
)
def test_check_refuses_non_finite_metric_values_written_by_hand(store, literal, shown):
    path = _record_valid(store)
    text = path.read_text().replace('"accuracy": 0.97', f'"accuracy": {literal}')
    path.write_text(text)
    with pytest.raises(
        UserError, match=rf"variant 'int8': metrics\.accuracy is {shown}; expected a finite number"
    ):
        store.check("d")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"\x89PNG\r\n\x1a\n\x00\xff\xfe",
            r"is not UTF-8 text \(byte 0 is 0x89\); expected a JSON baseline file",
        ),
        (b'{"format_version": 2, "environments": {', r"is not valid JSON \(Expecting .* at line 1\)"),
        (b"[]", r"is not a baseline file \(no valid format_version\)"),
        (b'{"format_version": 2, "environments": []}', r"environments is a list of 0; expected an object"),
        (b'{"format_version": 2, "scenario": 7, "environments": {}}', r"scenario is 7; expected text"),
        (b'{"format_version": 2, "environments": {"fp": 1}}', r"environments\.fp is 1; expected an object"),
        (
            b'{"format_version": 2, "environments": {"fp": {"variants": []}}}',
            r"environments\.fp\.variants is a list of 0; expected an object",
        ),
        (
            b'{"format_version": 2, "environments": {"fp": {"run_id": null, "variants": {}}}}',
            r"environments\.fp\.run_id is null; expected text",
        ),
        (
            b'{"format_version": 2, "environments": {"fp": {"variants": {"a": 1}}}}',
            r"environment 'fp', variant 'a': the entry is 1; expected an object",
        ),
    ],
)
def test_check_refuses_an_unreadable_file_in_one_line_naming_it(store, content, message):
    store.directory.mkdir()
    path = store.directory / "d.json"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as caught:
        store.check("d")
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert path.read_bytes() == content, "a corrupt baseline is never rewritten"


def test_load_and_read_validate_as_fully_as_check(store):
    path = _record_valid(store)
    doc = json.loads(path.read_text())
    doc["environments"]["other"] = json.loads(json.dumps(doc["environments"]["fp"]))
    doc["environments"]["other"]["variants"]["int8"]["metrics"]["accuracy"] = None
    path.write_text(json.dumps(doc))
    # the broken entry belongs to another machine, but the file is one record: it is refused whole
    for read in (lambda: store.load("d", "fp"), lambda: store.read("d"), lambda: store.fingerprints("d")):
        with pytest.raises(
            UserError, match=r"environment 'other', variant 'int8': metrics\.accuracy is null"
        ):
            read()


def test_check_of_a_valid_file_returns_what_the_run_compares_with(store):
    path = _record_valid(store)
    snapshot = store.check("d")
    assert isinstance(snapshot, BaselineSnapshot)
    assert snapshot.path == path
    assert snapshot.entry("fp") == store.load("d", "fp")
    assert snapshot.entry("fp")["variants"]["int8"]["metrics"] == {"accuracy": 0.97, "latency_p95_ms": 2.0}
    assert snapshot.entry("elsewhere") is None
    assert snapshot.sha256 is not None
    assert set(snapshot.entry_digests) == {"fp"}


def test_check_without_a_file_is_an_empty_snapshot(store):
    snapshot = store.check("d")
    assert (snapshot.document, snapshot.sha256, snapshot.entry("fp")) == (None, None, None)
