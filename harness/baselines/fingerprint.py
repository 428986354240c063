"""Describe the machine and software a run used, so a baseline is only compared on a like machine.

Framework versions are read from package metadata, never by importing the packages: importing
TensorFlow takes seconds and would make `harness compare` slow for no reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# distribution names as installed (importlib.metadata normalises - and _)
PACKAGES = ("torch", "torchao", "tensorflow", "torchserve", "torch-model-archiver", "locust", "numpy")

# What changes performance: CPU, cores the process may use, arch, OS family, interpreter minor
# version, framework versions. Not the hostname or date (two runners of one CI pool must share
# baselines), not the kernel patch level or memory size (they rarely move latency and would
# split baselines on every image refresh).
FINGERPRINT_FIELDS = (
    "cpu_model",
    "logical_cores",
    "usable_cores",
    "cpu_quota",
    "machine",
    "os",
    "python",
)
FINGERPRINT_PACKAGES = ("torch", "torchao", "tensorflow", "torchserve")

_CPUINFO_KEYS = ("model name", "Model", "Hardware", "cpu model", "Processor")


def environment_fingerprint() -> dict[str, Any]:
    """Facts about this machine and its software; stored with baselines and shown in reports."""
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "cpu_quota": _cgroup_cpu_quota(),
        "memory_total_bytes": _memory_total_bytes(),
        "machine": platform.machine(),
        "os": platform.system(),
        "os_release": platform.release(),
        "python": ".".join(str(p) for p in sys.version_info[:2]),
        "python_full": platform.python_version(),
        "packages": {name: package_version(name) for name in PACKAGES},
    }


def fingerprint_id(env: dict[str, Any]) -> str:
    """A short stable hash of the performance-relevant fields of `env` (12 hex characters)."""
    packages = env.get("packages") or {}
    key = {name: env.get(name) for name in FINGERPRINT_FIELDS}
    key["packages"] = {name: packages.get(name) for name in FINGERPRINT_PACKAGES}
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def config_id(config: Any) -> str:
    """A short stable hash of the settings a measurement depends on (load, serving, model, steps).

    Stored with each baseline variant, so a run under other settings is not compared with it.
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def package_version(name: str) -> str | None:
    """The installed version of a distribution, read from its metadata without importing it."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for wanted in _CPUINFO_KEYS:
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == wanted and value.strip():
                return " ".join(value.split())
    return platform.processor() or platform.machine() or "unknown"


def _usable_cores() -> int | None:
    """Cores this process may run on (taskset/cpuset), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _cgroup_cpu_quota() -> float | None:
    """A container CPU limit in cores (cgroup v2 cpu.max or v1 cfs quota), None if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]  # "max 100000"
        return None if quota == "max" else round(int(quota) / int(period), 3)
    except (OSError, ValueError):
        pass  # no cgroup v2 file or an unexpected format: try v1
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return round(quota_us / period_us, 3) if quota_us > 0 and period_us > 0 else None


def _memory_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
