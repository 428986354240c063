"""Serving targets: where the exported artifact runs while load is driven at it."""
