"""Which CPUs the server's process tree and the load generator may run on.

A load generator on the server's cores steals the CPU it is measuring: on a 2-core VM, Locust
beside TorchServe made the server's own inference 15-20% slower (issue 13's table). So by
default (`auto`), on a machine with 2 or more usable CPUs, the server tree and the load processes
get disjoint CPU sets. `serving.cpus` and `load.cpus` override the split ("any": not placed; a
CPU list: exactly those). Remote servers and remote workers are not on this machine and are left
alone; the in-process target serves from the harness itself, so it cannot be split either.

Affinity is set in the child before it executes the server (`pinned_argv`), so every process and
thread it starts later, such as TorchServe's model workers, inherits it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

AUTO = "auto"
ANY = "any"
# Linux's largest CONFIG_NR_CPUS is 8192: a bigger number is a typo, and a range such as
# "0-4294967295" must be refused before it is expanded into a set
MAX_CPU = 8191

# the child sets its own affinity, then becomes the server: nothing runs in between, and
# `-I -S` keeps it to ~20 ms with the standard library only
_PIN = (
    "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); "
    "os.execvp(sys.argv[2], sys.argv[2:])"
)


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on (a cpuset or taskset can make them fewer than the machine's)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux: no affinity API, nothing is placed
        return tuple(range(os.cpu_count() or 1))


def parse_cpus(value: str | int | Sequence[int]) -> tuple[int, ...] | str:
    """`"auto"`, `"any"`, or the CPUs of a list (`[2, 3]`), one number or a cpulist string (`"0-1,3"`).

    Raises ValueError saying what is expected, worded like the scenario's other validators (the
    scenario's message adds "expected" and the value given)."""
    if isinstance(value, int):
        value = [value]
    if isinstance(value, str):
        text = value.strip()
        if text in (AUTO, ANY):
            return text
        cpus: set[int] = set()
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            if not (_number(low) and (not dash or _number(high))):
                raise ValueError("'auto', 'any', or CPUs such as '1' or '0-1,3'")
            first, last = int(low), int(high) if dash else int(low)
            if last < first:
                raise ValueError(f"ranges from low to high ({part.strip()!r} runs backwards)")
            if last > MAX_CPU:
                raise ValueError(f"integer CPU numbers from 0 to {MAX_CPU}")
            cpus.update(range(first, last + 1))
        return tuple(sorted(cpus))
    cpus = set()
    for cpu in value:
        if isinstance(cpu, bool) or not isinstance(cpu, int) or not 0 <= cpu <= MAX_CPU:
            raise ValueError(f"integer CPU numbers from 0 to {MAX_CPU}, not {cpu!r}")
        cpus.add(cpu)
    if not cpus:
        raise ValueError("at least one CPU")
    return tuple(sorted(cpus))


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit alone accepts "²", which int() refuses


def cpulist(cpus: Iterable[int]) -> str:
    """`[0, 1, 2, 5]` -> `"0-2,5"`, the form taskset and /proc use."""
    ordered = sorted(set(cpus))
    runs: list[str] = []
    start = prev = None
    for cpu in [*ordered, None]:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(runs)


@dataclass(frozen=True)
class CpuPlacement:
    """The CPU sets given to the server's tree and to the load processes; None: not placed."""

    server: tuple[int, ...] | None
    load: tuple[int, ...] | None
    how: str  # one line: "auto: ...", "scenario: ...", or why nothing was placed
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        return {
            "server_cpus": list(self.server) if self.server is not None else None,
            "load_cpus": list(self.load) if self.load is not None else None,
            "how": self.how,
            "warnings": list(self.warnings),
        }


def plan_placement(
    location: str,
    serving_cpus: str | int | Sequence[int],
    load_cpus: str | int | Sequence[int],
    *,
    load_processes: int = 1,
    available: Sequence[int] | None = None,
) -> CpuPlacement:
    """The placement for one run. Explicit sets are taken as given (checked against `available`
    by the scenario checks); an `auto` side gets what the other leaves, and both `auto` split the
    CPUs: the load gets one CPU per local Locust process (at most half), the server the rest.
    `location` is the target's `server_location`: only a "local" server is placed."""
    cpus = tuple(available if available is not None else available_cpus())
    serving, load = parse_cpus(serving_cpus), parse_cpus(load_cpus)
    if location == "in-process":
        return CpuPlacement(None, None, "not placed: an in-process target serves from the harness's threads")
    if location == "remote":
        pinned = load if isinstance(load, tuple) else None
        how = "not placed: the server is remote" + (f"; load on CPU {cpulist(pinned)}" if pinned else "")
        return CpuPlacement(None, pinned, how)
    if serving == AUTO and load == AUTO:
        if len(cpus) < 2:
            return _checked(None, None, f"not placed: {len(cpus)} CPU available", cpus)
        take = min(max(1, load_processes), len(cpus) // 2)
        return _checked(cpus[:-take], cpus[-take:], "auto", cpus)
    server_set = _side(serving, load, cpus)
    load_set = _side(load, serving, cpus)
    return _checked(server_set, load_set, "scenario", cpus)


def _side(
    mine: tuple[int, ...] | str, other: tuple[int, ...] | str, cpus: tuple[int, ...]
) -> tuple[int, ...] | None:
    if isinstance(mine, tuple):
        return mine
    if mine == ANY or not isinstance(other, tuple):
        return None
    rest = tuple(c for c in cpus if c not in other)
    return rest or None  # the other side took every CPU: this one cannot avoid it


def _checked(
    server: tuple[int, ...] | None, load: tuple[int, ...] | None, how: str, cpus: tuple[int, ...]
) -> CpuPlacement:
    shared = set(server if server is not None else cpus) & set(load if load is not None else cpus)
    warnings: list[str] = []
    if shared:
        warnings.append(
            f"the load generator shares CPU {cpulist(shared)} with the server: its CPU use slows the "
            "server it measures (leave serving.cpus and load.cpus on auto, or give them disjoint CPUs)"
        )
    if server is not None or load is not None:
        parts = [f"server on CPU {cpulist(server)}" if server is not None else "server on any CPU",
                 f"load on CPU {cpulist(load)}" if load is not None else "load on any CPU"]  # fmt: skip
        how = f"{how}: {', '.join(parts)}"
    return CpuPlacement(server, load, how, tuple(warnings))


def pinned_argv(argv: Sequence[str], cpus: Sequence[int] | None) -> list[str]:
    """`argv` run with its affinity set to `cpus` first (inherited by all it starts); as is for None."""
    if cpus is None:
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _PIN, ",".join(str(c) for c in cpus), *argv]


def tree_cpus(pid: int | None) -> list[int] | None:
    """The union of the affinities of every thread of `pid` and its descendants; None if it is gone."""
    import psutil

    if pid is None:
        return None
    seen: set[int] = set()
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    for proc in processes:
        try:
            for thread in proc.threads():
                seen.update(os.sched_getaffinity(thread.id))
        except (psutil.Error, OSError):  # exited while we looked
            continue
    return sorted(seen) if seen else None


def pin_tree(pid: int, cpus: Sequence[int]) -> int:
    """Set the affinity of every thread of `pid` and its descendants (a live tree, placed after
    the fact); returns how many threads were set. Threads started later inherit it."""
    import psutil

    count = 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for proc in processes:
        try:
            threads = proc.threads()
        except psutil.Error:
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread.id, set(cpus))
                count += 1
            except OSError:  # exited while we looked
                continue
    return count


@contextmanager
def placed_here(cpus: Sequence[int] | None) -> Iterator[None]:
    """Run this process's threads on `cpus` for the duration (None: no change), then put each
    back where it was. While Locust runs, the harness itself watches it (reads its samples,
    samples CPU): that is load-generator work, which must not land on the server's CPUs."""
    if cpus is None:
        yield
        return
    saved: dict[int, set[int]] = {}
    for tid in _own_threads():
        try:
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, set(cpus))
        except OSError:  # a thread that ended meanwhile
            continue
    try:
        yield
    finally:
        for tid, before in saved.items():
            with suppress(OSError):
                os.sched_setaffinity(tid, before)


def _own_threads() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
