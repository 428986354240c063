"""The image-classifier case study's table: every variant's quality, size and served speed.

Usage: .venv/bin/python benchmarks/image_case_study.py [--tfserving] [RUN_DIR ...]

Without run folders it runs, in temporary reports/baselines folders (no baseline is recorded or
compared): scenarios/image_classifier_torch.yaml on TorchServe, the same scenario in-process (so
the served figures have their in-process counterpart), scenarios/image_classifier_tf.yaml
in-process and, with --tfserving, image_classifier_tf_tfserving.yaml. Given run folders, it only
reads their results.json. It prints one markdown table (the README's) and, per run, the built-in
model's training time and test accuracy.

"mean ms = server + client/HTTP" splits the client's mean latency: the server's own mean time per
request (`server_request_ms`: TorchServe's ts_inference_latency_microseconds, from accepting the
request to writing the reply; TF Serving's request_latency), and the rest, which the client, the
wire and the operating system add. In-process targets have no server part.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from harness.api import run_scenario
from harness.results import RunResult

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def inprocess_twin(scenario: Path, folder: Path) -> Path:
    """A copy of `scenario` served in-process (same model, variants, load and gates)."""
    data = yaml.safe_load(scenario.read_text())
    data["name"] = f"{data['name']}_inprocess"
    data["serving"] = {"target": "inprocess", "workers": 1}
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_all(tfserving: bool) -> list[RunResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="harness-image-") as tmp:
        folder = Path(tmp)
        scenarios = [
            SCENARIOS / "image_classifier_torch.yaml",
            inprocess_twin(SCENARIOS / "image_classifier_torch.yaml", folder),
            SCENARIOS / "image_classifier_tf.yaml",
        ]
        if tfserving:
            scenarios.append(SCENARIOS / "image_classifier_tf_tfserving.yaml")
        reports = ROOT / "reports"  # kept: the report of each run is the evidence for the table
        for scenario in scenarios:
            print(f"running {scenario.name} ...", file=sys.stderr, flush=True)
            results.append(run_scenario(scenario, reports_dir=reports, baselines_dir=folder / "baselines"))
    return results


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _mb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e6:.2f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def rows(result: RunResult) -> list[list[str]]:
    target = result.scenario.get("serving", {}).get("target", "")
    out = []
    for variant in result.variants:
        m: dict[str, Any] = variant.metrics
        p50 = m.get("latency_p50_ms")
        server = m.get("server_request_ms")
        split = ""
        point = variant.reported.gated if variant.reported is not None else None
        latencies = point.latencies_ms() if point is not None else None
        if server is not None and latencies is not None and len(latencies):
            mean = float(latencies.mean())
            split = f"{mean:.1f} = {server:.1f} + {mean - server:.1f}"
        out.append(
            [
                result.scenario_name,
                target,
                variant.name,
                _pct(m.get("accuracy")),
                _pct(m.get("agreement")) if variant.name != "reference" else "",
                _mb(m.get("model_size_bytes")),
                _mb(m.get("model_size_gzip_bytes")),
                _ms(p50),
                _ms(m.get("latency_p95_ms")),
                f"{m['throughput_rps']:.1f}" if "throughput_rps" in m else "",
                split,
                str(variant.outcome.value if variant.outcome else variant.error or ""),
            ]
        )
    return out


def training(result: RunResult) -> str:
    reference = next((v for v in result.variants if v.name == "reference"), None)
    base = (reference.details.get("base_model") or {}) if reference else {}
    seconds, accuracy, hit = base.get("train_seconds"), base.get("test_accuracy"), base.get("cache_hit")
    if seconds is None:
        return f"{result.scenario_name}: no training record"
    return (
        f"{result.scenario_name}: built-in trained in {seconds:.0f} s"
        f"{' (loaded from cache)' if hit else ''}, test accuracy {100 * accuracy:.1f}%"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders to read instead of running")
    parser.add_argument("--tfserving", action="store_true", help="also run the TF Serving twin")
    args = parser.parse_args()
    if args.runs:
        results = [RunResult.load(folder / "results.json") for folder in args.runs]
    else:
        results = run_all(args.tfserving)
    header = [
        "scenario", "target", "variant", "accuracy", "agreement", "size MB", "gzip MB",
        "p50 ms", "p95 ms", "req/s", "mean ms = server + client/HTTP", "outcome",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for result in results:
        for row in rows(result):
            print("| " + " | ".join(row) + " |")
    print()
    for result in results:
        print(f"- {training(result)}; run folder {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
