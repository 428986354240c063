"""Command line: parses arguments, calls harness.api, maps errors to exit codes.

Exit codes (harness.results.Outcome): 0 every gate passed, 1 a regression was found, 2 bad input
or a broken run, 3 inconclusive (measurements still INVALID after re-measuring), 130 interrupted.
Kept light: no torch, TensorFlow or locust import happens before a command needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.compression import RECIPES
from harness.errors import HarnessError, RunInterrupted, UserError, first_line
from harness.metrics.catalog import format_value, headline_quality
from harness.progress import ConsoleProgress
from harness.results import Outcome, RunResult
from harness.serving.registry import TARGET_DESCRIPTIONS, TARGETS
from harness.signals import ignore_interrupts, install_interrupt_handlers

_SUMMARY_METRICS = (
    "",  # the headline quality metric: accuracy, MAE (regression) or agreement (unlabelled data)
    "latency_p50_ms",
    "latency_p95_ms",
    "throughput_rps",
    "error_rate",
    "model_size_gzip_bytes",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # SIGTERM (CI cancelling a job) must unwind through the targets' context managers so that
    # servers are torn down; KeyboardInterrupt does exactly that. Installed for the whole command.
    install_interrupt_handlers()
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"harness: error: {first_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # teardown is done: a further signal must not turn exit code 130 into death by signal
        ignore_interrupts()
        print("harness: interrupted; servers were stopped", file=sys.stderr)
        if isinstance(exc, RunInterrupted):
            print(f"report: {exc.report}")
        return Outcome.INTERRUPTED.exit_code
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        print(
            f"harness: internal error: {type(exc).__name__}: {exc} (set HARNESS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="Benchmark and regression-test deployed ML models."
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compress, serve, load-test and gate a scenario")
    run.add_argument("scenario", type=Path, help="scenario YAML file")
    run.add_argument(
        "--update-baselines", action="store_true", help="rewrite the stored baseline with this run"
    )
    run.add_argument(
        "--reports-dir", type=Path, default=Path("reports"), help="where run folders go (reports/)"
    )
    run.add_argument(
        "--baselines-dir", type=Path, default=Path("baselines"), help="baseline store (baselines/)"
    )
    run.add_argument(
        "--keep-samples",
        action="store_true",
        help="also write every request's latency to a JSON file per load point (results.json keeps "
        "histograms and window percentiles only)",
    )
    run.set_defaults(func=_cmd_run)

    report = sub.add_parser(
        "report", help="re-render a run folder's index.html, junit.xml and summary.md from its results.json"
    )
    report.add_argument("run_dir", type=Path, help="a run folder under reports/")
    report.set_defaults(func=_cmd_report)

    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", type=Path, nargs="+", help="scenario YAML files")
    validate.set_defaults(func=_cmd_validate)

    lister = sub.add_parser("list", help="registered compression recipes and serving targets")
    lister.set_defaults(func=_cmd_list)

    schema = sub.add_parser("schema", help="print the scenario JSON Schema")
    schema.set_defaults(func=_cmd_schema)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.api import run_scenario  # local: keeps --help fast (pydantic, jinja2, requests)

    progress = ConsoleProgress()
    result = run_scenario(
        args.scenario,
        reports_dir=args.reports_dir,
        baselines_dir=args.baselines_dir,
        update_baselines=args.update_baselines,
        keep_samples=args.keep_samples,
        progress=progress,
    )
    _print_summary(progress.console, result)
    for line in result.causes():
        print(f"harness: {line}", file=sys.stderr)
    # the one line meant for scripts goes to stdout
    print(f"report: {Path(result.run_dir) / 'index.html'}")
    return result.outcome.exit_code


def _print_summary(console: Any, result: RunResult) -> None:
    from rich.table import Table

    table = Table(title=f"{result.scenario_name} ({result.run_id})")
    quality = headline_quality(v.metrics for v in result.variants)
    metrics = tuple(m or quality for m in _SUMMARY_METRICS)
    for column in ("variant", quality, "p50", "p95", "throughput", "errors", "size (gzip)", "outcome"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    styles = {
        Outcome.PASS: "green",
        Outcome.REGRESSION: "red",
        Outcome.ERROR: "red",
        Outcome.INCONCLUSIVE: "yellow",
    }
    for variant in result.variants:
        m = variant.metrics
        outcome = variant.outcome
        shown = "not decided" if outcome is None else f"[{styles[outcome]}]{outcome.value}[/]"
        table.add_row(
            variant.name,
            *(format_value(metric, m.get(metric)) for metric in metrics),
            shown,
        )
    console.print(table)
    console.print(result.baseline.message)


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.api import render_run  # local: keeps --help fast (pydantic, jinja2, requests)

    print(f"report: {render_run(args.run_dir)}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from harness.scenario.loader import load_scenario  # local: keeps --help fast (pydantic models)

    failures = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except UserError as exc:
            failures += 1
            print(f"harness: error: {exc}", file=sys.stderr)
            continue
        except Exception as exc:  # one bad file must not hide the verdict on the others
            if os.environ.get("HARNESS_DEBUG"):
                raise
            failures += 1
            print(f"harness: error: {path}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(
            f"ok: {path} ({scenario.name}: {len(scenario.all_variants())} variants"
            f" on {scenario.serving.target})"
        )
    return 2 if failures else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from harness.compression.params import (  # local: keeps --help fast (pydantic models)
        PARAMS,
        describe_params,
        describe_recipe,
    )

    print("recipes (params: default, description; as in `harness schema`):")
    for name in RECIPES.names():
        print(f"  {name:<16} {describe_recipe(name)}")
        model = PARAMS.get(name)
        for field, default, description in describe_params(model) if model else []:
            print(f"      {field} = {default}: {description}")
    print("serving targets:")
    for name in TARGETS.names():
        description = TARGET_DESCRIPTIONS.get(name, f"plugin target ({TARGETS.target(name)})")
        print(f"  {name:<16} {description}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from harness.scenario.schema import Scenario  # local: keeps --help fast (pydantic models)

    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
