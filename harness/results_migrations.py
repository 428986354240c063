"""Older results.json formats, upgraded in memory to the current one by `RunResult.load`.

Works on the JSON data only, so it never imports the records it upgrades to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.baselines import histogram


def update_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (untyped details, raw latencies, one measurement's verdicts) to the typed record.

    Format 1 kept only the reported numbers: each variant becomes one measurement whose gated
    point carries the histogram of its stored latencies; re-measure history is not recovered.
    """
    verdicts = data.get("verdicts", [])
    variants = []
    for v in data.get("variants", []):
        details = v.get("details") or {}
        validity = details.get("validity") or {"valid": True, "reasons": []}
        latencies = v.get("latencies_ms") or []
        point = {
            "label": "",
            "users": 0,
            "rate_rps": None,
            "metrics": v.get("metrics", {}),
            "validity": {"valid": bool(validity.get("valid", True)), "reasons": validity.get("reasons", [])},
            "latency_histogram": histogram.encode(latencies) if latencies else "",
            "window_latencies": v.get("window_latencies", {}),
            "failures": v.get("failures", {}),
            "failure_examples": v.get("failure_examples", []),
        }
        mine = [_verdict_v1(x) for x in verdicts if x.get("variant") == v["name"]]
        failed = any(x["status"] == "fail" for x in mine)
        variants.append(
            {
                "name": v["name"],
                "steps": v.get("steps", []),
                "compression": v.get("compression", []),
                "artifact": v.get("artifact", ""),
                "warnings": v.get("warnings", []),
                "details": {k: x for k, x in details.items() if k not in ("validity", "load_points")},
                "measurements": [
                    {
                        "number": 1,
                        "accuracy": v.get("metrics", {}).get("accuracy"),
                        "predictions": v.get("predictions", []),
                        "points": [point],
                        "metrics": v.get("metrics", {}),
                        "serving": v.get("serving", {}),
                        "verdicts": mine,
                    }
                ],
                "verdicts": mine,
                "outcome": "regression" if failed else "pass",
            }
        )
    status = data.get("baseline_status", "none")
    error = data.get("error") or ""
    return {
        **{k: data.get(k) for k in ("run_id", "scenario_name", "scenario", "started_at", "finished_at")},
        "environment": data.get("environment", {}),
        "target": data.get("target", {}),
        "variants": variants,
        "baseline": {
            "status": status if status in ("compared", "recorded", "updated") else "none",
            "message": data.get("baseline_message", ""),
        },
        "stage_seconds": data.get("stage_seconds", {}),
        "run_dir": data.get("run_dir", ""),
        "failure": {"stage": "run", "message": error} if error else None,
        "format_version": 2,
    }


def _verdict_v1(data: dict[str, Any]) -> dict[str, Any]:
    evidence = dict(data.get("evidence") or {})
    test = evidence.get("test")
    if test in ("windows", "mannwhitney", "bootstrap"):
        kind = "latency"
    elif test == "mcnemar":
        kind = "accuracy"
    else:
        kind = "threshold"
        evidence = {"reason": str(evidence.get("reason", "")), "compared": evidence.get("compared", True)}
    return {
        **{
            k: data.get(k)
            for k in ("variant", "metric", "threshold", "current", "baseline", "limit", "message")
        },
        "status": "pass" if data.get("passed") else "fail",
        "evidence": {**evidence, "kind": kind},
        "measurement": int(evidence.get("measurement", 1)),
    }


# MIGRATIONS[n] turns a format n document into format n + 1 (asv's update_to_N, as baselines do)
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: update_to_2}
