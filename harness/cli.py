"""Command line: parses arguments, calls harness.api, maps errors to exit codes.

Exit codes: 0 every gate passed, 1 a regression was found, 2 bad input or a failed run.
Kept light: no torch, TensorFlow or locust import happens before a command needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError, RegressionFound, UserError
from harness.signals import install_interrupt_handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # SIGTERM (CI cancelling a job) must unwind through the targets' context managers so that
    # servers are torn down; KeyboardInterrupt does exactly that. Installed for the whole command.
    install_interrupt_handlers()
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(
            f"harness: {'regression' if isinstance(exc, RegressionFound) else 'error'}: {exc}",
            file=sys.stderr,
        )
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; servers were stopped", file=sys.stderr)
        return 130
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
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", type=Path, nargs="+", help="scenario YAML files")
    validate.set_defaults(func=_cmd_validate)

    lister = sub.add_parser("list", help="registered compression recipes and serving targets")
    lister.set_defaults(func=_cmd_list)

    schema = sub.add_parser("schema", help="print the scenario JSON Schema")
    schema.set_defaults(func=_cmd_schema)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.api import run_scenario
    from harness.progress import ConsoleProgress

    progress = ConsoleProgress()
    result = run_scenario(
        args.scenario,
        reports_dir=args.reports_dir,
        baselines_dir=args.baselines_dir,
        update_baselines=args.update_baselines,
        progress=progress,
    )
    _print_summary(progress.console, result)
    if not result.passed:
        # a gate re-measured for confirmation fails in every measurement: name it once, as last seen
        latest: dict[tuple[str, str], Any] = {}
        for v in result.verdicts:
            if not v.passed:
                latest[(v.variant, v.metric)] = v
        failed = list(latest.values())
        raise RegressionFound(
            f"{len(failed)} gate(s) failed: " + "; ".join(f"{v.variant}: {v.message}" for v in failed)
        )
    return 0


def _print_summary(console: Any, result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{result.scenario_name} ({result.run_id})")
    for column in ("variant", "accuracy", "p50 ms", "p95 ms", "req/s", "errors", "size (gzip)", "gates"):
        table.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
    for variant in result.variants:
        m = variant.metrics
        verdicts = [v for v in result.verdicts if v.variant == variant.name]
        gates = (
            "-"
            if not verdicts
            else ("[red]FAIL[/]" if any(not v.passed for v in verdicts) else "[green]pass[/]")
        )
        table.add_row(
            variant.name,
            _fmt(m.get("accuracy"), "{:.4f}"),
            _fmt(m.get("latency_p50_ms"), "{:.2f}"),
            _fmt(m.get("latency_p95_ms"), "{:.2f}"),
            _fmt(m.get("throughput_rps"), "{:.0f}"),
            _fmt(m.get("error_rate"), "{:.2%}"),
            _fmt(m.get("model_size_gzip_bytes"), "{:,.0f} B"),
            gates,
        )
    console.print(table)
    console.print(result.baseline_message)
    # the one line meant for scripts goes to stdout
    print(f"report: {Path(result.run_dir) / 'index.html'}")


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _cmd_validate(args: argparse.Namespace) -> int:
    from harness.scenario import load_scenario

    failures = 0
    for path in args.scenarios:
        try:
            scenario = load_scenario(path)
        except UserError as exc:
            failures += 1
            print(f"harness: error: {exc}", file=sys.stderr)
            continue
        print(
            f"ok: {path} ({scenario.name}: {len(scenario.all_variants())} variants"
            f" on {scenario.serving.target})"
        )
    return 2 if failures else 0


def _cmd_list(args: argparse.Namespace) -> int:
    from harness.compression import RECIPES
    from harness.serving.registry import TARGETS

    print("recipes:")
    for name in RECIPES.names():
        print(f"  {name:<16} {RECIPES.target(name)}")
    print("serving targets:")
    for name in TARGETS.names():
        print(f"  {name:<16} {TARGETS.target(name)}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    import json

    from harness.scenario import Scenario

    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
