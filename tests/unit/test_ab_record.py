"""The A/B record: outcome and exit code from its comparisons, and ab.json written and read back."""

from __future__ import annotations

import json

import pytest

from harness.ab.record import AB_FORMAT_VERSION, AbResult
from harness.errors import UserError
from harness.results import Outcome
from tests.unit.ab_records import make_ab, make_broken_ab, make_inconclusive_ab, make_passing_ab


def test_outcome_is_the_most_serious_comparison_and_maps_to_the_exit_code():
    assert make_ab().outcome is Outcome.REGRESSION
    assert make_ab().exit_code == 1
    assert make_passing_ab().exit_code == 0
    assert make_broken_ab().outcome is Outcome.ERROR
    assert make_broken_ab().exit_code == 2


def test_inconclusive_exits_3_unless_the_ci_chose_pass():
    assert make_inconclusive_ab("fail").outcome is Outcome.INCONCLUSIVE
    assert make_inconclusive_ab("fail").exit_code == 3
    chosen = make_inconclusive_ab("pass")
    assert chosen.outcome is Outcome.INCONCLUSIVE  # the record still says what happened
    assert chosen.exit_code == 0


def test_record_round_trips_through_ab_json(tmp_path):
    ab = make_ab()
    ab.write(tmp_path)
    data = json.loads((tmp_path / "ab.json").read_text())
    assert data["format_version"] == AB_FORMAT_VERSION
    assert data["outcome"] == "regression"
    assert data["exit_code"] == 1
    assert data["counts"] == ab.counts()
    assert AbResult.load(tmp_path) == ab


def test_a_newer_or_broken_file_is_a_one_line_error(tmp_path):
    make_ab().write(tmp_path)
    path = tmp_path / "ab.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format_version": AB_FORMAT_VERSION + 1}))
    with pytest.raises(UserError, match="newer than this harness reads"):
        AbResult.load(path)
    path.write_text(json.dumps({**data, "base": None}))
    with pytest.raises(UserError, match="malformed A/B record"):
        AbResult.load(path)
    with pytest.raises(UserError, match=r"expected an A/B run folder holding ab\.json"):
        AbResult.load(tmp_path / "missing")
