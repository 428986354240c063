"""Load generation: Locust processes for HTTP targets, a thread pool for in-process ones.

plan.py (load points, measured windows), arrivals.py (open-loop schedules), the two drivers,
samples.py / result.py (what was measured), search.py (max_rps_at_slo), validity.py (verdicts).
"""
