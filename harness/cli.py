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
from harness.ab.schedule import (
    DEFAULT_MIN_EFFECT,
    DEFAULT_ROUNDS,
    DEFAULT_SLICE_S,
    DEFAULT_SLOT_S,
    DEFAULT_WARMUP_S,
    MIN_PAIRS,
    default_pairs,
)
from harness.compression import RECIPES
from harness.errors import HarnessError, RunInterrupted, UserError, first_line
from harness.history.options import HistoryOptions
from harness.metrics.catalog import format_value, headline_quality
from harness.progress import ConsoleProgress
from harness.results import Outcome, RunResult
from harness.serving.registry import TARGET_DESCRIPTIONS, TARGETS
from harness.signals import ignore_interrupts, install_interrupt_handlers

TESTBED_HELP = "names the machine in history records (e.g. a runner label; default: CPU model and cores)"
ACKS_HELP = "acknowledged change points (default: perf-acks.yaml in the current folder, if any)"
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
    _history_options(run)
    run.set_defaults(func=_cmd_run)

    ab = sub.add_parser(
        "ab",
        help="compare a scenario at a base git ref with the working tree, interleaved on this machine",
        description="Measure the scenario as it stands in the working tree (head) and at the base ref "
        "(its model files and data too, through a git worktree) on this machine, interleaved in ABBA "
        "blocks with both servers up, and decide each metric from paired block log-ratios. Exit codes: "
        "0 no regression, 1 regression, 2 bad input or a broken run, 3 inconclusive (too noisy to "
        "decide; --inconclusive=pass makes it 0).",
    )
    ab.add_argument("scenario", type=Path, help="scenario YAML file (the head side)")
    base = ab.add_mutually_exclusive_group()
    base.add_argument(
        "--base", metavar="REF", default=None,
        help="git ref of the base side (default: the merge-base of HEAD with the default branch)",
    )  # fmt: skip
    base.add_argument(
        "--base-scenario", metavar="FILE", type=Path, default=None,
        help="compare with this scenario file instead of a git ref",
    )  # fmt: skip
    ab.add_argument(
        "--pairs", type=int, default=None,
        help=f"ABBA blocks over all rounds, each one value per metric per side (default: per round the "
        f"fewest that can reach alpha, at least {MIN_PAIRS}; {default_pairs(0.01, DEFAULT_ROUNDS)} for "
        f"alpha 0.01 and {DEFAULT_ROUNDS} rounds)",
    )  # fmt: skip
    ab.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS,
        help=f"split the blocks over this many fresh starts of both servers (default {DEFAULT_ROUNDS}): a "
        "server instance has its own speed, which no number of blocks on one instance averages away",
    )  # fmt: skip
    ab.add_argument(
        "--slot-s", type=float, default=DEFAULT_SLOT_S,
        help=f"measured seconds of each side in each block (default {DEFAULT_SLOT_S:g})",
    )  # fmt: skip
    ab.add_argument(
        "--slice-s", type=float, default=DEFAULT_SLICE_S,
        help=f"with both servers up, one Locust run loads the sides in turn, this many seconds at a "
        f"time (default {DEFAULT_SLICE_S:g}), so that both see the same machine; 0: one Locust run per "
        "slot",
    )  # fmt: skip
    ab.add_argument(
        "--warmup-s", type=float, default=DEFAULT_WARMUP_S,
        help=f"warm-up seconds before each slot (default {DEFAULT_WARMUP_S:g}; after a server start, "
        "the scenario's load.warmup_s if longer)",
    )  # fmt: skip
    ab.add_argument(
        "--alpha", type=float, default=None,
        help="significance level (default: the scenario's gate_policy.alpha, 0.01 unless set)",
    )  # fmt: skip
    ab.add_argument(
        "--min-effect", type=float, default=DEFAULT_MIN_EFFECT,
        help=f"smallest relative change of a load metric that counts (default {DEFAULT_MIN_EFFECT:g}); "
        "a relative gate in the scenario (latency_p95_ms: '+10%%') sets its metric's own",
    )  # fmt: skip
    ab.add_argument(
        "--aa-pairs", type=int, default=0,
        help="A/A blocks first (base against a second base server) to measure the noise floor "
        "(default 0: the floor comes from --history, or none)",
    )  # fmt: skip
    ab.add_argument(
        "--servers", choices=("auto", "both-up", "restart"), default="auto",
        help="both servers up (only one loaded at a time) or one at a time, restarted for each slot; "
        "auto: both up when memory allows (default)",
    )  # fmt: skip
    ab.add_argument(
        "--variants", default="", help="comma-separated variants to compare (default: all both sides have)"
    )
    ab.add_argument(
        "--inconclusive", choices=("fail", "pass"), default="fail",
        help="exit code of an inconclusive comparison: fail = 3 (default), pass = 0",
    )  # fmt: skip
    ab.add_argument(
        "--reports-dir", type=Path, default=Path("reports"), help="where the run folder goes (reports/)"
    )
    ab.add_argument(
        "--report-url", default=None, help="where the HTML report will be published, for the PR comment"
    )
    ab.add_argument("--history", type=Path, default=None, help="history store to take the noise floor from")
    ab.add_argument("--testbed", default=None, help=TESTBED_HELP)
    ab.set_defaults(func=_cmd_ab)

    history = sub.add_parser("history", help="change points of every series in a history store")
    history.add_argument("history_dir", type=Path, help="a folder written by `harness run --history`")
    history.add_argument("--acks", type=Path, default=None, help=ACKS_HELP)
    history.add_argument("--scenario", default=None, help="only this scenario's series")
    history.add_argument(
        "--json", type=Path, default=None, help="also write the change points to this JSON file"
    )
    history.add_argument(
        "--min-points", type=int, default=10, help="points a series needs before it is searched (default 10)"
    )
    history.set_defaults(func=_cmd_history)

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


def _history_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--history", type=Path, default=None,
        help="append this run's metrics to this append-only history store and look for change points",
    )  # fmt: skip
    parser.add_argument("--testbed", default=None, help=TESTBED_HELP)
    parser.add_argument("--acks", type=Path, default=None, help=ACKS_HELP)


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
        history=None if args.history is None else HistoryOptions(args.history, args.testbed, args.acks),
    )
    _print_summary(progress.console, result)
    for line in result.causes():
        print(f"harness: {line}", file=sys.stderr)
    _publish(Path(result.run_dir) / "summary.md")
    # the one line meant for scripts goes to stdout
    print(f"report: {Path(result.run_dir) / 'index.html'}")
    return result.outcome.exit_code


def _cmd_ab(args: argparse.Namespace) -> int:
    from harness.ab.runner import AbOptions, run_ab  # local: keeps --help fast (pydantic, numpy)

    options = AbOptions(
        base_ref=args.base,
        base_scenario=args.base_scenario,
        pairs=args.pairs,
        rounds=args.rounds,
        slot_s=args.slot_s,
        slice_s=args.slice_s,
        warmup_s=args.warmup_s,
        alpha=args.alpha,
        min_effect=args.min_effect,
        aa_pairs=args.aa_pairs,
        history_dir=args.history,
        testbed=args.testbed,
        inconclusive=args.inconclusive,
        reports_dir=args.reports_dir,
        report_url=args.report_url,
        servers=args.servers,
        variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()),
    )
    progress = ConsoleProgress()
    result = run_ab(args.scenario, options, progress=progress)
    counts = ", ".join(f"{n} {status}" for status, n in result.counts().items())
    method = result.method
    progress.console.print(
        f"{result.outcome.value.upper()}: {counts} ({method.pairs} blocks in {method.rounds} rounds)"
    )
    for line in result.causes():
        print(f"harness: {line}", file=sys.stderr)
    run_dir = Path(result.run_dir)
    _publish(run_dir / "summary.md")
    print(f"report: {run_dir / 'index.html'}")
    print(f"summary: {run_dir / 'summary.md'}")
    return result.exit_code


def _cmd_history(args: argparse.Namespace) -> int:
    from harness.history.view import history_command  # local: keeps --help fast (numpy, ruptures)

    return history_command(
        args.history_dir,
        acks_path=args.acks,
        scenario=args.scenario,
        json_out=args.json,
        min_points=args.min_points,
    )


def _publish(summary: Path) -> None:
    """The run's summary on the CI job page, when $GITHUB_STEP_SUMMARY names one."""
    from harness.report.step_summary import publish_step_summary  # local: keeps --help fast

    if summary.is_file():
        publish_step_summary(summary.read_text(encoding="utf-8"))


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
