"""Scenario files: schema (`schema`, `data_spec`, `load_spec`), loading (`loader`) and validation
(`checks`, `applicability`). No torch or TensorFlow is imported here.

Import from the submodules (`harness.scenario.loader.load_scenario`, `harness.scenario.schema.Scenario`):
this package imports nothing itself, because the loader's checks import the data package, whose
modules import the schema from here.
"""
