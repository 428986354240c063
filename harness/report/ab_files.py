"""The report files of an A/B run folder, written from its record alone: index.html and summary.md.

summary.md is the pull-request comment (harness.report.pr_comment), so the file a workflow posts
is the file a user finds in the folder. Both are rendered before either is written, and each is
written atomically, so a rendering error leaves the folder as it was.
"""

from __future__ import annotations

from pathlib import Path

from harness.ab.record import AbResult
from harness.atomic import atomic_write_text
from harness.report.ab_html import render_ab_html
from harness.report.html import INDEX_FILE
from harness.report.markdown import SUMMARY_FILE
from harness.report.pr_comment import render_pr_comment


def write_ab_reports(ab: AbResult, run_dir: Path, *, report_url: str | None = None) -> Path:
    """Write index.html and summary.md into `run_dir`; return the path of index.html.

    `report_url` (else the record's) is where the comment links to the HTML report; without one
    it links to index.html next to summary.md."""
    run_dir = Path(run_dir)
    url = report_url or ab.report_url or None
    texts = {
        SUMMARY_FILE: render_pr_comment(ab, report_url=url),
        INDEX_FILE: render_ab_html(ab, report_url=url),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        atomic_write_text(run_dir / name, text)
    return run_dir / INDEX_FILE
