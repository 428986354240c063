"""Nightly history: an append-only store of every run's metrics per testbed, and change points.

`store` appends and reads the records (JSON Lines), `changepoints` finds steps in each series,
`acks` reads `perf-acks.yaml` (acknowledged changes start a new segment), `record` holds the
typed rows and the trends a run's report draws.
"""
