#!/usr/bin/env bash
# Idempotent setup: a .venv with every pinned dependency, plus the Java 17 that TorchServe needs.
# Re-running is cheap: the install is skipped while pyproject.toml and constraints.txt are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: harness needs Python 3.11 (torch 2.13.0's CPU wheel is built for it); found $("$PYTHON" --version 2>&1)." >&2
  echo "setup: install python3.11 and re-run, or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}
major=$(command -v java >/dev/null 2>&1 && java_major || echo 0)
if [ "${major:-0}" -lt 17 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -z "${HARNESS_NO_APT:-}" ]; then
    echo "setup: TorchServe needs Java 17+; installing openjdk-17-jre-headless with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  elif [ -n "${HARNESS_SKIP_JAVA:-}" ]; then
    echo "setup: warning: no Java 17+; TorchServe scenarios and tests will be skipped (HARNESS_SKIP_JAVA is set)" >&2
  else
    echo "setup: TorchServe needs Java 17 or newer (found: ${major:-none})." >&2
    echo "setup: install it, e.g. 'sudo apt-get install openjdk-17-jre-headless' (Debian/Ubuntu) or" >&2
    echo "setup: 'brew install openjdk@17' (macOS); or set HARNESS_SKIP_JAVA=1 to skip TorchServe." >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # the constraints file pins every package, torch to the 2.13.0 CPU wheel above all
  .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# the optional native load engine (load.generator: native) is C source, built once into the cache
if ! engine=$(.venv/bin/python -m harness.load.native_build 2>&1); then
  echo "setup: note: the native load engine was not built (load.generator: native unavailable): $engine" >&2
fi
echo "setup: ready (.venv, $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'), java ${major:-?})"
