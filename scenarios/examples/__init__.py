"""Example user code for the shipped scenarios text_classifier.yaml and diabetes_regression.yaml.

Not part of the harness: this is what a user writes to bring their own model and data. Each
scenario names these functions as `python:examples.<module>:<function>`; the harness puts the
scenario's folder (`scenarios/`) on sys.path, which is what makes `examples` importable.
"""
