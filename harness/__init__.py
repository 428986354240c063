"""harness: benchmark and regression-test harness for deployed ML models."""

__version__ = "0.1.0"
