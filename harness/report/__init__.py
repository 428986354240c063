"""Reports of a run: self-contained HTML (jinja2 + inline SVG), JUnit XML and a Markdown summary.

`write_reports(result, run_dir)` writes all three from the run record. Names resolve lazily so
`import harness.report` costs nothing until a writer is used.
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
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
