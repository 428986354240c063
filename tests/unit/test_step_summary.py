"""The summary on the GitHub Actions job page: appended to $GITHUB_STEP_SUMMARY, kept under its cap."""

from __future__ import annotations

import logging

from harness.report.step_summary import (
    GITHUB_LIMIT_BYTES,
    STEP_SUMMARY_BUDGET,
    STEP_SUMMARY_ENV,
    TRUNCATED_NOTE,
    publish_step_summary,
)


def test_nothing_happens_outside_github_actions(tmp_path, monkeypatch):
    monkeypatch.delenv(STEP_SUMMARY_ENV, raising=False)
    assert publish_step_summary("# hello") is None
    assert publish_step_summary("# hello", env={}) is None
    assert publish_step_summary("# hello", env={STEP_SUMMARY_ENV: ""}) is None
    assert list(tmp_path.iterdir()) == []


def test_appends_to_the_file_the_variable_names(tmp_path, monkeypatch):
    path = tmp_path / "step_summary.md"
    monkeypatch.setenv(STEP_SUMMARY_ENV, str(path))
    assert publish_step_summary("### run one\n\n| a |\n|--|\n| 1 |") == path
    assert publish_step_summary("### run two\n", env={STEP_SUMMARY_ENV: str(path)}) == path
    # the second summary starts a paragraph of its own: it cannot continue the first one's table
    assert path.read_text(encoding="utf-8") == "### run one\n\n| a |\n|--|\n| 1 |\n\n### run two\n"


def test_keeps_what_was_in_the_file(tmp_path):
    path = tmp_path / "step_summary.md"
    path.write_text("earlier step output\n", encoding="utf-8")
    publish_step_summary("mine", env={STEP_SUMMARY_ENV: str(path)})
    assert path.read_text(encoding="utf-8") == "earlier step output\n\nmine\n"


def test_a_summary_too_long_is_cut_at_a_line_under_the_budget(tmp_path):
    path = tmp_path / "step_summary.md"
    line = "| ünïcödé row with multi-byte characters | 1.23 ms | +4.5% |\n"
    text = line * (2 * GITHUB_LIMIT_BYTES // len(line.encode()))
    assert publish_step_summary(text, env={STEP_SUMMARY_ENV: str(path)}) == path
    data = path.read_bytes()
    assert len(data) <= STEP_SUMMARY_BUDGET < GITHUB_LIMIT_BYTES
    written = data.decode("utf-8")  # never cut inside a character
    assert written.endswith(TRUNCATED_NOTE)
    body = written[: -len(TRUNCATED_NOTE)]
    assert body.endswith("| +4.5% |")  # whole lines only
    assert set(body.split("\n")) == {line.rstrip("\n")}


def test_the_budget_counts_what_the_step_wrote_before(tmp_path):
    path = tmp_path / "step_summary.md"
    path.write_text("x" * (STEP_SUMMARY_BUDGET - 1_000), encoding="utf-8")
    publish_step_summary("line\n" * 1_000, env={STEP_SUMMARY_ENV: str(path)})
    assert path.stat().st_size <= STEP_SUMMARY_BUDGET
    assert path.read_text(encoding="utf-8").endswith(TRUNCATED_NOTE)


def test_a_full_file_gets_nothing_more(tmp_path, caplog):
    path = tmp_path / "step_summary.md"
    path.write_text("x" * STEP_SUMMARY_BUDGET, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="harness.report.step_summary"):
        assert publish_step_summary("more", env={STEP_SUMMARY_ENV: str(path)}) is None
    assert path.stat().st_size == STEP_SUMMARY_BUDGET
    assert "full" in caplog.text


def test_an_unwritable_summary_is_logged_not_raised(tmp_path, caplog):
    target = tmp_path / "a-directory"
    target.mkdir()
    with caplog.at_level(logging.WARNING, logger="harness.report.step_summary"):
        assert publish_step_summary("text", env={STEP_SUMMARY_ENV: str(target)}) is None
    assert "could not write the step summary" in caplog.text
