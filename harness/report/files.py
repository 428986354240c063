"""The report files of a run folder, written from the run record alone.

`write_reports` is what the runner calls after results.json is on disk and what
`harness report RUN_DIR` calls on a record read back with `RunResult.load`: the same record gives
the same bytes, so a re-rendered report can be compared with the one the run wrote.
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import atomic_write_text
from harness.report.exports import export_texts
from harness.report.html import INDEX_FILE, render_html
from harness.report.junit import JUNIT_FILE, junit_xml
from harness.report.markdown import SUMMARY_FILE, render_markdown
from harness.results import RunResult


def write_reports(result: RunResult, run_dir: Path) -> Path:
    """Write junit.xml, summary.md, index.html and the exports (benchmark.json,
    benchmark-action.json: harness.report.exports) into `run_dir`, each atomically; return the
    path of index.html. Every file is rendered before any is written, so a rendering error leaves
    the folder as it was."""
    run_dir = Path(run_dir)
    texts = {
        JUNIT_FILE: junit_xml(result),
        SUMMARY_FILE: render_markdown(result),
        INDEX_FILE: render_html(result),
        **export_texts(result),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        atomic_write_text(run_dir / name, text)
    return run_dir / INDEX_FILE
