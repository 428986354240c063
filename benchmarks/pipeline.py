"""Wall time of each pipeline stage for a scenario (default: the quickstart).

Usage: .venv/bin/python benchmarks/pipeline.py [scenario.yaml]
Runs in a temporary reports/baselines folder so it never records or compares a real baseline.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from harness.api import run_scenario
from harness.signals import interrupts_unwind

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    scenario = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "scenarios" / "quickstart.yaml"
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        start = time.perf_counter()
        result = run_scenario(
            scenario, reports_dir=Path(tmp) / "reports", baselines_dir=Path(tmp) / "baselines"
        )
        total = time.perf_counter() - start

    by_stage: dict[str, float] = defaultdict(float)
    print(f"{'stage':<40} {'seconds':>8}")
    for key, seconds in result.stage_seconds.items():
        print(f"{key:<40} {seconds:>8.2f}")
        by_stage[key.split(":", 1)[0]] += seconds
    print("-" * 49)
    for stage, seconds in by_stage.items():
        print(f"{stage + ' (all variants)':<40} {seconds:>8.2f}")
    print(f"{'total wall time':<40} {total:>8.2f}")
    print(
        f"scenario {result.scenario_name}: {len(result.variants)} variants, "
        f"target {result.target.get('target')}, machine {result.environment.get('cpu_model', '?')}, "
        f"{result.environment.get('logical_cores', '?')} cores"
    )
    for v in result.variants:
        m = v.metrics
        print(
            f"  {v.name:<14} acc {m.get('accuracy', 0):.4f}  p50 {m.get('latency_p50_ms', 0):.2f} ms  "
            f"p95 {m.get('latency_p95_ms', 0):.2f} ms  {m.get('throughput_rps', 0):.0f} req/s  "
            f"gzip {m.get('model_size_gzip_bytes', 0):,.0f} B"
        )
    return 0


if __name__ == "__main__":
    with interrupts_unwind():  # SIGTERM tears the servers down like Ctrl-C
        try:
            sys.exit(main())
        except KeyboardInterrupt as exc:  # servers are torn down by now; say why and stop
            print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
            sys.exit(130)
