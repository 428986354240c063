"""The metrics a run can report: name (with unit), unit, whether lower or higher is better, where
the figure comes from (the model or the load window) and whether its change is good or bad.

Gates, baselines and reports all look metrics up here, so a gate on an unknown name is caught at
validation time and every number is shown with its unit. The two number renderings live here too:
`format_value` (with the unit, for reports) and `format_number` (plain, for verdict messages).
Pure data: importing this is instant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Better = Literal["lower", "higher"]
# "model": a property of the artifact (accuracy, size, sparsity), measured outside the load window,
# so it stands even when the window is INVALID; "load": measured in the load window
Source = Literal["model", "load"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `better` decides which direction of change is a regression.

    `source` says where the figure comes from: "load" metrics mean nothing when the load window is
    INVALID (`is_load_metric`). `quality` is False for descriptive figures (CPU, memory, request
    counts, late sends): a change in them is neither good nor bad in itself, so a report shows it
    uncoloured; they can still be gated, in the direction `better` gives.
    """

    name: str
    unit: str  # "ms", "req/s", "fraction", "bytes", "count", "%", "MiB"
    better: Better
    description: str
    label: str = ""  # short column/row label for reports; defaults to the name
    source: Source = field(kw_only=True)  # required: every metric says where it comes from
    quality: bool = True  # False: descriptive; a report does not colour its change better/worse

    @property
    def title(self) -> str:
        return self.label or self.name

    def is_worse(self, new: float, old: float) -> bool:
        """True if `new` is strictly worse than `old` for this metric."""
        return new > old if self.better == "lower" else new < old


def _model(name: str, unit: str, better: Better, description: str, label: str) -> MetricSpec:
    return MetricSpec(name, unit, better, description, label, source="model")


def _load(
    name: str, unit: str, better: Better, description: str, label: str, *, quality: bool = True
) -> MetricSpec:
    return MetricSpec(name, unit, better, description, label, source="load", quality=quality)


_LATENCY = "client-side request latency over the measured window (successful requests, warm-up excluded)"

# Quality of the served outputs on the test split (harness.metrics.quality): against the labels,
# and fidelity to the reference variant of the same run (which needs no labels). "model" metrics:
# load noise cannot move them. Units the name cannot carry: "label" is the unit of the regression
# labels, "output" that of the model's raw outputs (logits, probabilities or values), "nats" the
# natural-log unit of information.
_SERVED = "of the served outputs, measured through the serving target on the whole test split"
_QUALITY: tuple[MetricSpec, ...] = (
    _model(
        "top5_accuracy",
        "fraction",
        "higher",
        f"Top-5 accuracy {_SERVED}: the true class is among the 5 highest outputs (ties ranked as "
        "scikit-learn's top_k_accuracy_score does). Classification with more than 5 classes (0..1).",
        "top-5 accuracy",
    ),
    _model(
        "macro_f1",
        "fraction",
        "higher",
        f"Macro-averaged F1 {_SERVED}: the unweighted mean of per-class F1 over the classes present "
        "in the labels or the predictions (scikit-learn's f1_score average='macro'; 0..1).",
        "macro F1",
    ),
    _model(
        "mae",
        "label",
        "lower",
        f"Mean absolute error {_SERVED}, over every output value, in the labels' unit (regression).",
        "MAE",
    ),
    _model(
        "rmse",
        "label",
        "lower",
        f"Root mean squared error {_SERVED}, pooled over every output value (the root of "
        "scikit-learn's mean_squared_error), in the labels' unit (regression).",
        "RMSE",
    ),
    _model(
        "agreement",
        "fraction",
        "higher",
        "Fraction of test examples whose top-1 class is the reference variant's in the same run "
        "(served outputs of both; 1 for the reference itself). Needs no labels (0..1).",
        "agreement vs reference",
    ),
    _model(
        "kl_divergence",
        "nats",
        "lower",
        "Mean over test examples of KL(reference || variant) between the output distributions "
        "(softmax of logits; probabilities clipped at 1e-12 and renormalised), served outputs of "
        "both, in nats; 0 for the reference itself. Needs no labels.",
        "KL vs reference",
    ),
    _model(
        "output_abs_diff_max",
        "output",
        "lower",
        "Largest absolute difference between any raw output value of the variant and the "
        "reference's on the same example (served outputs; 0 for the reference itself). Logits "
        "differ by a constant without changing the prediction: use kl_divergence for logits.",
        "max |Δ output|",
    ),
    _model(
        "output_abs_diff_mean",
        "output",
        "lower",
        "Mean absolute difference between the variant's raw output values and the reference's on "
        "the same examples (served outputs; 0 for the reference itself).",
        "mean |Δ output|",
    ),
)
# figures against the labels, which the pipeline also measures on the exported file in-process
_LABEL_METRICS = frozenset({"top5_accuracy", "macro_f1", "mae", "rmse"})


def _inprocess(spec: MetricSpec) -> MetricSpec:
    """The same figure measured on the exported artifact loaded in-process (suffix `_inprocess`)."""
    description = spec.description.replace(_SERVED, "of the exported artifact loaded in-process")
    return _model(f"{spec.name}_inprocess", spec.unit, spec.better, description, f"{spec.title} (in-process)")


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _load("latency_p50_ms", "ms", "lower", f"Median {_LATENCY}.", "latency p50"),
        _load("latency_p90_ms", "ms", "lower", f"90th percentile {_LATENCY}.", "latency p90"),
        _load("latency_p95_ms", "ms", "lower", f"95th percentile {_LATENCY}.", "latency p95"),
        _load("latency_p99_ms", "ms", "lower", f"99th percentile {_LATENCY}.", "latency p99"),
        _load("latency_max_ms", "ms", "lower", f"Slowest {_LATENCY}.", "latency max"),
        _load("latency_mean_ms", "ms", "lower", f"Mean {_LATENCY}.", "latency mean"),
        _load(
            "throughput_rps",
            "req/s",
            "higher",
            "Successful requests per second over the measured window.",
            "throughput",
        ),
        _load(
            "error_rate",
            "fraction",
            "lower",
            "Failed requests / all requests in the measured window (0..1).",
            "error rate",
        ),
        _model(
            "accuracy",
            "fraction",
            "higher",
            "Top-1 accuracy of the served artifact, measured through the serving target (0..1).",
            "accuracy (served)",
        ),
        _model(
            "accuracy_inprocess",
            "fraction",
            "higher",
            "Top-1 accuracy of the exported artifact loaded in-process (0..1).",
            "accuracy (in-process)",
        ),
        _model(
            "accuracy_drop_vs_reference",
            "fraction",
            "lower",
            "Served accuracy of the reference variant minus this variant's, in the same run: what "
            "the compression cost (0 for the reference itself; negative if it gained).",
            "accuracy drop vs reference",
        ),
        *_QUALITY,
        *(_inprocess(spec) for spec in _QUALITY if spec.name in _LABEL_METRICS),
        _model(
            "model_size_bytes",
            "bytes",
            "lower",
            "Size of the served artifact (file or folder).",
            "model size",
        ),
        _model(
            "model_size_gzip_bytes",
            "bytes",
            "lower",
            "Size of the served artifact after gzip: what pruning saves on the wire and on disk.",
            "model size (gzip)",
        ),
        _model(
            "sparsity", "fraction", "higher", "Fraction of weights that are exactly zero (0..1).", "sparsity"
        ),
        _model("param_count", "count", "lower", "Number of parameters in the model.", "parameters"),
        _load(
            "client_cpu_percent",
            "%",
            "lower",
            "CPU used by the load generator, in percent of one core; near 100 means the client, "
            "not the server, may be the bottleneck.",
            "client CPU",
            quality=False,
        ),
        _load(
            "max_rps_at_slo",
            "req/s",
            "higher",
            "Highest measured throughput whose latency percentile stayed under the search's SLO.",
            "max req/s at SLO",
        ),
        _load(
            "late_fraction",
            "fraction",
            "lower",
            "Open loop: fraction of requests sent later than scheduled by more than validity.late_ms.",
            "late sends",
            quality=False,
        ),
        _load(
            "service_latency_p95_ms",
            "ms",
            "lower",
            "Open loop: 95th percentile from the actual send (without the client-side queueing that "
            "latency_p95_ms, counted from the scheduled send, includes).",
            "service p95",
        ),
        _load(
            "server_inference_ms",
            "ms",
            "lower",
            "Server-reported model inference time per request, from its metrics endpoint.",
            "server inference",
        ),
        _load(
            "server_queue_ms",
            "ms",
            "lower",
            "Server-reported time a request waited in the server's queue, per request.",
            "server queue",
        ),
        _load(
            "server_request_ms",
            "ms",
            "lower",
            "Server-reported whole request time per request (TF Serving request_latency).",
            "server request",
        ),
        _load(
            "server_cpu_percent",
            "%",
            "lower",
            "CPU of the server's process tree during the window, in percent of one core.",
            "server CPU",
            quality=False,
        ),
        _load(
            "server_rss_mb",
            "MiB",
            "lower",
            "Largest resident memory of the server's process tree during the window.",
            "server RSS",
            quality=False,
        ),
        _load(
            "request_count",
            "count",
            "higher",
            "Requests started in the measured window (successful + failed).",
            "requests",
            quality=False,
        ),
    )
}

LATENCY_METRICS: tuple[str, ...] = tuple(n for n in METRICS if n.startswith("latency_"))


def get_metric(name: str) -> MetricSpec:
    """The spec of `name`; ValueError listing the known names if there is none."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


# metrics that compare outputs with labels: meaningless on unlabelled data (synthetic, labels: null)
LABELLED_METRICS: frozenset[str] = frozenset(
    {"accuracy", "accuracy_drop_vs_reference", *_LABEL_METRICS}
    | {f"{name}_inprocess" for name in ("accuracy", *_LABEL_METRICS)}
)


# what a one-line summary shows for "how good is the model", in order of preference: the label
# metric of the task, else fidelity to the reference (unlabelled data)
HEADLINE_QUALITY: tuple[str, ...] = ("accuracy", "mae", "agreement")


def headline_quality(metric_sets: Iterable[Mapping[str, float]]) -> str:
    """The quality metric a summary table shows for these variants' metrics: the first of
    HEADLINE_QUALITY that any of them has (accuracy when none has any)."""
    present = {name for metrics in metric_sets for name in metrics}
    return next((name for name in HEADLINE_QUALITY if name in present), HEADLINE_QUALITY[0])


def is_load_metric(name: str) -> bool:
    """Whether `name` is measured in the load window (and so means nothing when the window is
    INVALID). An unknown name is not: nothing says it came from the window."""
    spec = METRICS.get(name)
    return spec is not None and spec.source == "load"


def format_value(name: str, value: float | None) -> str:
    """A short human rendering with the unit: '3.41 ms', '1.2 MiB', '97.5 %', '12,345'."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    spec = METRICS.get(name)
    unit = spec.unit if spec else ""
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 1000 else f"{value:,.0f} ms"
    if unit == "req/s":
        return f"{value:,.1f} req/s" if abs(value) < 1000 else f"{value:,.0f} req/s"
    if unit == "fraction":
        return f"{value * 100:.2f} %"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "bytes":
        return format_bytes(value)
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:.4g}"


def format_bytes(value: float) -> str:
    """Binary units, since model files are compared with `ls -lh`: '812 B', '33.4 KiB', '1.20 MiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{size:.0f} B"
            return f"{size:.1f} {unit}" if abs(size) >= 10 else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_number(name: str, value: float | None, *, digits: int | None = None) -> str:
    """A plain number without unit, short but precise enough to compare: '3.41', '0.9583', '123456'.

    Bytes and counts print as integers, 1000 and above without decimals (2428 req/s: decimals would
    only be noise), 100..1000 with one, 1..100 with two, below 1 four significant digits. `digits`
    forces that many significant digits. None prints 'none'; NaN and infinities as Python does.
    """
    if value is None:
        return "none"
    if not math.isfinite(value):
        return str(value)
    if digits is not None:
        return f"{value:.{digits}g}"
    spec = METRICS.get(name)
    if spec is not None and spec.unit in ("bytes", "count") and value == int(value):
        return str(int(value))
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def format_numbers(name: str, first: float, second: float) -> tuple[str, str]:
    """Both as `format_number`, with more digits when they differ but would print the same
    ('2.20 > limit 2.20' becomes '2.2049 > limit 2.2'), up to the 17 that tell any two floats apart."""
    a, b = format_number(name, first), format_number(name, second)
    for digits in (6, 8, 10, 12, 14, 16, 17):
        if a != b or first == second:
            break
        a, b = format_number(name, first, digits=digits), format_number(name, second, digits=digits)
    return a, b
