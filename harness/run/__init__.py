"""Running a scenario: measure each variant, re-measure what failed or was INVALID, decide.

`measure` serves and loads one variant into a typed `Measurement`; `variants` runs the loop over
all variants (reference deltas, confirmation re-measures, the final decision); `outputs` writes
the baseline and the run folder's files, inside the run's error handling.
"""
