"""Limits and the strict base model shared by every scenario model.

Upper bounds are generous for any real scenario and small enough that a typo cannot exhaust the
machine; NaN, infinities and YAML booleans where a number belongs are refused by `StrictModel`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

REFERENCE_VARIANT = "reference"
# names become file and folder names: no leading dot, no separators
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Upper bounds. Generous for any real scenario, small enough that a typo cannot exhaust the machine.
MAX_DURATION_S = 3600.0  # any one warm-up, measurement, window, probe or startup deadline
MAX_USERS = 1000  # concurrent users / in-flight requests of one load point (one thread each in-process)
MAX_RATE_RPS = 100_000.0  # open-loop request rate, and the highest rate a search may try
# Fastest rate any target could plausibly serve (10x the fastest measured here, TFLite in-process at
# ~106k calls/s): a `min_requests` that this rate cannot reach in the longest measurement is refused.
PLAUSIBLE_MAX_RPS = 1_000_000.0
MAX_BATCH = 1024  # examples in one request, or in one server-side batch
MAX_SWEEP_POINTS = 64  # entries of a users or rate_rps list
MAX_VARIANTS = 32
MAX_STEPS = 8  # compression steps of one variant
MAX_LOAD_WORKERS = 256  # local Locust worker processes, with force_workers; else os.cpu_count()
MAX_REMOTE_WORKERS = 1000
MAX_SEED = 2**32 - 1  # numpy and scikit-learn seeds are 32-bit
MAX_DIM = 1_000_000  # one dimension of one example; a 4k RGB image is 3840x2160x3
PYTHON_PREFIX = "python:"  # model.source and data kind python: "python:pkg.module:function"

# Allowances of `Scenario.deadline_s` for the stages whose length the scenario does not state.
BASE_ALLOWANCE_S = 300.0  # build or train the reference model, export it, write the report
STEP_ALLOWANCE_S = 300.0  # one compression step, including its fine-tuning or distillation
VARIANT_ALLOWANCE_S = 120.0  # export, in-process and served accuracy, server-metric scrapes
POINT_ALLOWANCE_S = 30.0  # one load point: starting and stopping the load generator


class StrictModel(BaseModel):
    """Base of the scenario models: unknown keys are errors, numbers are finite and not booleans."""

    # strict: YAML `yes` is not the number 1, nor 2.0 a user count; ints are still accepted as floats
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
