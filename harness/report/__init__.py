"""Reports of a run: self-contained HTML (jinja2 + inline SVG), JUnit XML, a Markdown summary and
exports for other tools (pytest-benchmark JSON, github-action-benchmark JSON); and of an A/B run:
HTML and the pull-request comment.

`write_reports(result, run_dir)` writes a run's from its record, `write_ab_reports(ab, run_dir)`
an A/B run's, and `publish_step_summary(markdown)` puts a summary on the GitHub Actions job page.
Names resolve lazily so `import harness.report` costs nothing until a writer is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "write_reports": "harness.report.files",
    "render_report": "harness.report.html",
    "render_html": "harness.report.html",
    "write_junit": "harness.report.junit",
    "junit_xml": "harness.report.junit",
    "render_markdown": "harness.report.markdown",
    "write_exports": "harness.report.exports",
    "write_ab_reports": "harness.report.ab_files",
    "render_pr_comment": "harness.report.pr_comment",
    "publish_step_summary": "harness.report.step_summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
