"""junit.xml and summary.md say the run's outcome: a broken run is an error, never a silent pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from harness.report.junit import junit_xml, write_junit
from harness.report.markdown import render_markdown
from harness.results import RunFailure, RunResult
from tests.unit.report_records import make_broken_run, make_run


def _parse(result: RunResult) -> tuple[ET.Element, dict[str, ET.Element]]:
    root = ET.fromstring(junit_xml(result).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None
    return suite, {c.get("name", ""): c for c in suite.findall("testcase")}


def _outcome_of(case: ET.Element) -> str:
    """'pass' or the tag of the element that says otherwise."""
    tags = [child.tag for child in case if child.tag != "system-out"]
    assert len(tags) <= 1, tags
    return tags[0] if tags else "pass"


def test_a_finished_run_lists_each_variant_with_its_outcome(tmp_path):
    path = write_junit(make_run(), tmp_path / "out" / "junit.xml")
    root = ET.parse(path).getroot()
    suite, cases = _parse(make_run())
    assert list(cases) == ["reference", "int8", "pruned"]
    assert {n: _outcome_of(c) for n, c in cases.items()} == {
        "reference": "pass",
        "int8": "failure",
        "pruned": "skipped",
    }
    for element in (root, suite):
        assert (
            element.get("tests"),
            element.get("failures"),
            element.get("errors"),
            element.get("skipped"),
        ) == (
            "3",
            "1",
            "0",
            "1",
        )
    assert suite.get("time") == "87.000"  # the wall time, not a sum of overlapping stages


def test_a_regression_lists_every_failed_gate_with_the_measurement_it_was_judged_on():
    _, cases = _parse(make_run())
    failure = cases["int8"].find("failure")
    assert failure is not None
    assert failure.get("type") == "RegressionFound"
    assert failure.text == "int8 latency_p95_ms 3.5 beyond limit 3.08 [re-measure 1]"


def test_an_inconclusive_variant_is_skipped_with_its_validity_reasons():
    _, cases = _parse(make_run())
    skipped = cases["pruned"].find("skipped")
    assert skipped is not None
    assert skipped.get("type") == "Inconclusive"
    assert skipped.get("message", "").startswith(
        "inconclusive: measurement INVALID after 2 measurements: not stable"
    )
    assert "not stable after 10 windows" in (skipped.text or "")


def test_a_broken_run_has_an_error_testcase_and_lists_no_unjudged_variant_as_passing():
    suite, cases = _parse(make_broken_run())
    assert {n: _outcome_of(c) for n, c in cases.items()} == {
        "reference": "pass",  # judged before the run broke
        "int8": "error",  # broke the run
        "pruned": "skipped",  # never judged
    }
    assert (suite.get("tests"), suite.get("errors"), suite.get("skipped"), suite.get("failures")) == (
        "3",
        "1",
        "1",
        "0",
    )
    error = cases["int8"].find("error")
    assert error is not None
    assert error.get("type") == "RunFailure"
    assert (
        error.get("message")
        == "run broke at stage load: TorchServe exited with code 1 while loading the model"
    )
    assert "log: variants/int8/serving/console.log" in (error.text or "")
    assert (error.text or "").endswith("java.lang.OutOfMemoryError: Java heap space")
    not_judged = cases["pruned"].find("skipped")
    assert not_judged is not None
    assert not_judged.get("type") == "NotJudged"


def test_a_run_that_broke_before_any_variant_still_reports_an_error():
    result = make_run()
    result.variants = []
    result.failure = RunFailure(stage="data", message="digits dataset could not be read\nTraceback ...")
    suite, cases = _parse(result)
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
    error = cases["run"].find("error")
    assert error is not None
    assert error.get("message") == "run broke at stage data: digits dataset could not be read"


def test_an_interrupted_run_says_so_in_junit():
    _, cases = _parse(make_broken_run(interrupted=True))
    error = cases["int8"].find("error")
    assert error is not None
    assert error.get("message", "").startswith("interrupted at stage load")


def test_junit_strips_characters_xml_cannot_hold():
    result = make_broken_run()
    assert result.failure is not None
    result.failure.log_tail = "bad \x00\x1b byte"
    _parse(result)


@pytest.mark.parametrize(
    ("keep", "heading", "line"),
    [
        (("reference",), "### ✅ PASS · digits", "**Outcome: pass** (exit code 0)"),
        (("reference", "int8"), "### ❌ REGRESSION · digits", "**Outcome: regression** (exit code 1)"),
        (("reference", "pruned"), "### ⚠️ INCONCLUSIVE · digits", "**Outcome: inconclusive** (exit code 3)"),
    ],
)
def test_summary_states_the_outcome_and_exit_code(keep, heading, line):
    result = make_run()
    result.variants = [v for v in result.variants if v.name in keep]
    md = render_markdown(result)
    assert md.startswith(heading + "\n")
    assert line in md


def test_summary_of_a_regression_lists_failed_gates_and_invalid_measurements_apart():
    md = render_markdown(make_run())
    failed = md[md.index("**Failed gates**") :]
    assert "**int8**" in failed
    assert "Mann-Whitney p=0.0021" in failed
    assert "pruned" not in failed
    invalid = md[md.index("**Invalid measurements**") : md.index("**Failed gates**")]
    assert "**pruned** (after 2 measurements): not stable after 10 windows" in invalid
    assert "| pruned | ⚠️ inconclusive |" in md
    assert "⚠️ 1/1 inconclusive" in md


def test_summary_of_a_broken_run_says_error_with_the_failure_and_the_log_tail():
    md = render_markdown(make_broken_run())
    assert md.startswith("### 💥 ERROR · digits\n")
    assert "**Outcome: error** (exit code 2)" in md
    assert "**The run broke at stage `load`** (variant **int8**): TorchServe exited" in md
    assert "log: `variants/int8/serving/console.log`" in md
    assert (
        "```text\n2025-01-01 12:00:40 INFO loading model\njava.lang.OutOfMemoryError: Java heap space\n```"
        in md
    )
    assert "| int8 | 💥 error |" in md
    assert "| pruned | not judged |" in md


def test_summary_fences_a_log_tail_that_contains_backticks():
    result = make_broken_run()
    assert result.failure is not None
    result.failure.log_tail = "a ``` b"
    assert "````text\na ``` b\n````" in render_markdown(result)


def test_summary_escapes_table_breaking_names():
    result = make_run()
    result.variants[1].name = "a|b<script>"
    md = render_markdown(result)
    assert "a\\|b&lt;script>" in md
    assert "<script>" not in md
