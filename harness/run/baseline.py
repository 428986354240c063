"""The stored baseline around one run: read and checked before measuring, written after deciding.

The record tells the truth about the file: `recorded`/`updated` only once the write succeeded,
`not_written` with the reason otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harness.baselines.fingerprint import config_id, fingerprint_id
from harness.baselines.store import (
    BaselineSnapshot,
    FileBaselineStore,
    variant_distributions,
    variant_examples,
    variant_metrics,
)
from harness.gates.judge import current_examples
from harness.results import BaselineOutcome, Outcome, RunResult
from harness.run.variants import Baseline
from harness.scenario.schema import Scenario


@dataclass
class BaselinePlan:
    """The baseline as read before measuring, and what this run is to do with it."""

    store: FileBaselineStore
    snapshot: BaselineSnapshot
    fingerprint: str
    configs: dict[str, str]
    update: bool
    compare_with: Baseline  # empty when nothing is compared (first run, or --update-baselines)
    entry_run_id: str | None  # the run that recorded the compared entry
    examples_fingerprint: str = ""  # the evaluation data's: names the examples per-example vectors are for

    @property
    def compares(self) -> bool:
        return self.compare_with.metrics is not None


def read_baseline(
    scenario: Scenario,
    directory: str,
    environment: Mapping[str, object],
    *,
    update: bool,
    data_fingerprint: str = "",
) -> BaselinePlan:
    """Read and fully check the stored baseline before any measuring (a corrupt file stops here).

    The file is checked even with `update`: its other environments' entries are kept on write."""
    store = FileBaselineStore(directory)
    snapshot = store.check(scenario.name)
    fp = fingerprint_id(dict(environment))
    configs = variant_config_ids(scenario, data_fingerprint)
    entry = None if update else snapshot.entry(fp)
    compare_with = Baseline()
    if entry is not None:
        compare_with = Baseline(
            metrics=variant_metrics(entry, configs) or {},
            samples=variant_distributions(entry, configs) or {},
            examples=variant_examples(entry, configs) or {},
        )
    return BaselinePlan(
        store=store,
        snapshot=snapshot,
        fingerprint=fp,
        configs=configs,
        update=update,
        compare_with=compare_with,
        entry_run_id=None if entry is None else str(entry.get("run_id", "?")),
        examples_fingerprint=data_fingerprint,
    )


def variant_config_ids(scenario: Scenario, data_fingerprint: str = "") -> dict[str, str]:
    """Per variant, an id of every setting its measurements depend on, and of the data's content:
    changed data (one example, one label) is a new configuration, never silently compared."""
    shared = scenario.model_dump(
        mode="json", include={"model", "data", "serving", "load"}, exclude={"serving": {"startup_timeout_s"}}
    )
    shared["data_sha256"] = data_fingerprint
    if shared["load"].get("generator") == "locust":
        # the default, and the only generator before the key existed: stored baselines keep their ids
        del shared["load"]["generator"]
    return {
        v.name: config_id({**shared, "steps": [step.model_dump(mode="json") for step in v.steps]})
        for v in scenario.all_variants()
    }


def settle_baseline(result: RunResult, plan: BaselinePlan, labels: np.ndarray | None) -> None:
    """Decide whether this run becomes the baseline, write it if so, and say truthfully what happened.

    - A run that compared with a stored entry never writes (the entry stays the reference).
    - Otherwise (first run on this environment, or `--update-baselines`) the run is written when
      its measurements are sound: no run error and every variant with a VALID measurement.
      A first run must also have passed its gates; `--update-baselines` writes even when gates
      failed, since replacing the reference is what it asks for.
    - A failed write leaves the file as it was and becomes the run's failure (exit 2).
    """
    where = str(plan.snapshot.path)
    outcome = BaselineOutcome(path=where, fingerprint=plan.fingerprint)
    result.baseline = outcome
    if plan.compares:
        outcome.status = "compared"
        outcome.message = (
            f"compared with baseline {plan.entry_run_id} ({where}, environment {plan.fingerprint})"
        )
        missing = sorted({v.name for v in result.variants} - set(plan.compare_with.metrics or {}))
        if missing:
            outcome.message += (
                f"; variant(s) {', '.join(missing)} have no baseline under these settings (new variant, or "
                "model, data, steps, serving or load changed): run with --update-baselines to record them"
            )
        return
    outcome.status = "not_written"
    why_not = _why_not_written(result, plan.update)
    if why_not:
        prefix = "" if plan.update else f"no baseline for environment {plan.fingerprint}; "
        outcome.message = f"{prefix}not recorded: {why_not}"
        return
    variants = {v.name: v for v in result.variants}
    distributions = {}
    for name, v in variants.items():
        reported = v.reported
        gated = reported.gated if reported is not None else None
        distributions[name] = {
            "latencies_ms": gated.latencies_ms() if gated is not None else [],
            "window_latencies": gated.window_latencies if gated is not None else {},
            # class ids are stored with the labels they are scored against: none without labels
            "predictions": reported.predictions if reported is not None and labels is not None else [],
            "labels": labels,
            "per_example": (
                current_examples(reported, plan.examples_fingerprint or None)
                if reported is not None
                else None
            ),
        }
    plan.store.record(
        result.scenario_name,
        plan.fingerprint,
        result.environment,
        result.run_id,
        {name: v.metrics for name, v in variants.items()},
        configs=plan.configs,
        distributions=distributions,
        seen=plan.snapshot,
    )
    if plan.update:
        outcome.status = "updated"
        outcome.message = f"baseline rewritten on request ({where}, environment {plan.fingerprint})"
    else:
        outcome.status = "recorded"
        outcome.message = (
            f"first run on environment {plan.fingerprint}: recorded as the baseline in {where}; "
            "nothing compared"
        )


def _why_not_written(result: RunResult, update: bool) -> str:
    if result.failure is not None:
        return "the run did not complete"
    broken = [v.name for v in result.variants if v.outcome is Outcome.ERROR]
    if broken:
        return f"variant(s) {', '.join(broken)} could not be measured"
    invalid = [v.name for v in result.variants if not any(m.valid for m in v.measurements)]
    if invalid:
        return f"variant(s) {', '.join(invalid)} have no VALID measurement"
    if not update and result.outcome is not Outcome.PASS:
        return "gates failed"
    return ""
