"""The outside clients load_fidelity.py holds the harness's Locust driver against: bare Locust and wrk.

Each runs as a subprocess in its own session (output to a log in the run folder) for warm-up plus
measured seconds, posting one fixed body with the same headers as the harness's clients. What
comes back is a `ClientRun` over the measured part only, so it compares with LocustDriver's
measured windows. Client CPU: wrk's from `os.wait4` (all of it: wrk starts in a millisecond and
its warm-up is a separate run); bare Locust's from `getrusage` inside the process at the end of
its warm-up and at test stop, because importing Locust and gevent costs ~1 s of CPU that
`os.wait4` would spread over the requests (the wait4 total is kept in the notes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import RunError
from harness.load.plan import MeasureHooks
from harness.placement import cpulist

EXIT_SLACK_S = 60.0  # startup and exit beyond the planned run (Locust's imports on a busy machine)
POLL_S = 0.05

# A minimal locustfile, as a Locust user would write one: FastHttpUser, one task, and a request
# listener keeping exact response times (Locust's own statistics round them)
BARE_LOCUSTFILE = """\
import json, os, resource, time

import gevent
from locust import FastHttpUser, events, task

BODY = open(os.environ["FIDELITY_BODY"], "rb").read()
HEADERS = json.loads(os.environ["FIDELITY_HEADERS"])
PATH = os.environ["FIDELITY_PATH"]
WARMUP_S = float(os.environ["FIDELITY_WARMUP_S"])
SECONDS = float(os.environ["FIDELITY_SECONDS"])
times = []  # (completion epoch s, response ms, ok)
marks = {}


class BareUser(FastHttpUser):
    @task
    def predict(self):
        self.client.post(PATH, data=BODY, headers=HEADERS)


@events.request.add_listener
def _on_request(response_time, exception, **_kwargs):
    times.append((time.time(), response_time, exception is None))


def _cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(environment):
    gevent.sleep(WARMUP_S)
    marks["warm"] = (time.time(), _cpu_s())
    open(os.environ["FIDELITY_WARM_MARK"], "w").close()
    gevent.sleep(SECONDS)
    marks["stop"] = (time.time(), _cpu_s())
    open(os.environ["FIDELITY_STOP_MARK"], "w").close()
    environment.runner.quit()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs):
    gevent.spawn(_measure, environment)


@events.test_stop.add_listener
def _on_test_stop(**_kwargs):
    with open(os.environ["FIDELITY_OUT"], "w") as fh:
        json.dump({"marks": marks, "times": times}, fh)
"""


@dataclass
class ClientRun:
    """One measured run of one client (the server's figures are added by the caller)."""

    rps: float
    p50_ms: float
    requests: int
    measure_s: float
    client_us_per_request: float
    failures: int = 0
    notes: list[str] = field(default_factory=list)


def run_bare_locust(
    base_url: str, path: str, body: bytes, headers: Mapping[str, str], users: int, warmup_s: int,
    seconds: int, cpus: Sequence[int] | None, run_dir: Path, hooks: MeasureHooks,
) -> ClientRun:  # fmt: skip
    """`locust --headless -u users -r users` with BARE_LOCUSTFILE, which quits after warm-up plus
    `seconds` (`-t` is only a backstop: Locust starts its timer before the test)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bare_locustfile.py").write_text(BARE_LOCUSTFILE)
    (run_dir / "body.bin").write_bytes(body)
    out, warm, stop = run_dir / "bare_times.json", run_dir / "warm", run_dir / "stop"
    for stale in (out, warm, stop):
        stale.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(
        FIDELITY_BODY=str(run_dir / "body.bin"), FIDELITY_HEADERS=json.dumps(dict(headers)),
        FIDELITY_PATH=path, FIDELITY_WARMUP_S=str(warmup_s), FIDELITY_SECONDS=str(seconds),
        FIDELITY_OUT=str(out), FIDELITY_WARM_MARK=str(warm), FIDELITY_STOP_MARK=str(stop),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    argv = [
        sys.executable, "-m", "locust", "-f", "bare_locustfile.py", "--headless", "-u", str(users),
        "-r", str(users), "-t", f"{warmup_s + seconds + 30}s", "--host", base_url, "--only-summary",
        "--exit-code-on-error", "0",
    ]  # fmt: skip
    window: list[str] = []  # the server's window follows the client's measured part

    def poll() -> None:
        if not window and warm.exists():
            hooks.start()
            window.append("started")
        if window == ["started"] and stop.exists():
            hooks.end()
            window.append("ended")

    log = run_dir / "bare_locust.log"
    code, total_cpu_s = run_to_end(argv, log, cpus, warmup_s + seconds, env=env, cwd=run_dir, on_poll=poll)
    if window == ["started"]:
        hooks.end()
    if code != 0 or not out.exists():
        raise RunError(f"bare Locust failed (exit code {code})", log=log, log_tail=_tail(log))
    data = json.loads(out.read_text())
    (warm_t, warm_cpu), (stop_t, stop_cpu) = data["marks"]["warm"], data["marks"]["stop"]
    measured = [(ms, ok) for end, ms, ok in data["times"] if warm_t <= end <= stop_t]
    ok_ms = [ms for ms, ok in measured if ok]
    span = stop_t - warm_t
    return ClientRun(
        rps=len(measured) / span if span > 0 else float("nan"),
        p50_ms=float(np.median(ok_ms)) if ok_ms else float("nan"),
        requests=len(measured),
        measure_s=span,
        client_us_per_request=(stop_cpu - warm_cpu) / len(measured) * 1e6 if measured else float("nan"),
        failures=len(measured) - len(ok_ms),
        notes=[f"process CPU from start to exit (os.wait4): {total_cpu_s:.2f} s"],
    )


def wrk_script(body_path: Path, headers: Mapping[str, str]) -> str:
    """The Lua script for `wrk -s`: POST the body file's bytes with `headers`."""
    lines = [
        f"local f = assert(io.open({_lua(str(body_path))}, 'rb'))",
        "wrk.body = f:read('*a')",
        "f:close()",
        'wrk.method = "POST"',
    ]
    lines += [f"wrk.headers[{_lua(name)}] = {_lua(value)}" for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def _lua(text: str) -> str:
    # a JSON string of printable ASCII is also a Lua string literal (\" \\ escapes, no \u)
    literal = json.dumps(text)
    if "\\u" in literal:
        raise ValueError(f"not printable ASCII, cannot go into the wrk script: {text!r}")
    return literal


def run_wrk(
    url: str, body: bytes, headers: Mapping[str, str], users: int, warmup_s: int, seconds: int,
    cpus: Sequence[int] | None, run_dir: Path, hooks: MeasureHooks,
) -> ClientRun:  # fmt: skip
    """`wrk -t1 -c users` for `warmup_s` (not measured), then for `seconds` with --latency."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "body.bin").write_bytes(body)
    script = run_dir / "post.lua"
    script.write_text(wrk_script(run_dir / "body.bin", headers))
    base = ["wrk", "-t1", f"-c{users}", "-s", str(script)]
    if warmup_s:
        run_to_end([*base, f"-d{warmup_s}s", url], run_dir / "wrk_warmup.log", cpus, warmup_s)
    log = run_dir / "wrk.log"
    log.unlink(missing_ok=True)
    hooks.start()
    try:
        code, cpu_s = run_to_end([*base, f"-d{seconds}s", "--latency", url], log, cpus, seconds)
    finally:
        hooks.end()
    if code != 0:
        raise RunError(f"wrk failed (exit code {code})", log=log, log_tail=_tail(log))
    figures = parse_wrk(log.read_text())
    requests = int(figures["requests"])
    return ClientRun(
        rps=figures["rps"],
        p50_ms=figures["p50_ms"],
        requests=requests,
        measure_s=figures["duration_s"],
        client_us_per_request=cpu_s / requests * 1e6 if requests else float("nan"),
        failures=int(figures["failures"]),
    )


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def parse_wrk(text: str) -> dict[str, float]:
    """requests, duration_s, rps, p50_ms and failures (non-2xx/3xx plus socket errors) from wrk's output."""
    count = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),", text, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not (count and rps and p50):
        raise RunError("could not read wrk's output (requests, Requests/sec or the 50% latency)",
                       log_tail=text[-2000:])  # fmt: skip
    failures = 0
    if non2xx := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        failures += int(non2xx.group(1))
    if sockets := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        failures += sum(int(n) for n in sockets.groups())
    return {
        "requests": float(count.group(1)),
        "duration_s": float(count.group(2)) * _UNIT_MS[count.group(3)] / 1e3,
        "rps": float(rps.group(1)),
        "p50_ms": float(p50.group(1)) * _UNIT_MS[p50.group(2)],
        "failures": float(failures),
    }


def run_to_end(
    argv: Sequence[str],
    log: Path,
    cpus: Sequence[int] | None,
    planned_s: float,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    on_poll: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Run `argv` (under `taskset -c cpus`: it execs, so the pid and its rusage stay the client's)
    until it exits; (exit code, its user + system CPU seconds from os.wait4). Killed with its
    group if it outlives `planned_s` by EXIT_SLACK_S or this process is interrupted."""
    if cpus is not None:
        argv = ["taskset", "-c", cpulist(cpus), *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + planned_s + EXIT_SLACK_S
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                return proc.returncode, usage.ru_utime + usage.ru_stime
            if on_poll is not None:
                on_poll()
            if time.monotonic() > deadline:
                raise RunError(f"{argv[0]} still running {EXIT_SLACK_S:g} s after its planned end", log=log)
            time.sleep(POLL_S)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
