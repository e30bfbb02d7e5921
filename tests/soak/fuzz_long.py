#!/usr/bin/env python3
"""The long fuzzing run: every test of tests/test_fuzz.py with >= 100 000 examples.

    python3 tests/soak/fuzz_long.py                  # 100 000 examples per test, 2 at a time
    python3 tests/soak/fuzz_long.py -n 20000 -j 1    # shorter
    python3 tests/soak/fuzz_long.py -k parsers       # some of them

Each test runs in its own pytest process (``FUZZ_EXAMPLES=N``, hypothesis' statistics on) and
the script prints one line per test: examples that passed, invalid ones (rejected by a
filter), seconds, and the verdict; then a Markdown table for docs/reliability.md. Exit status
1 if any test failed (its output is kept in build/soak/fuzz-<test>.log).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "tests" / "test_fuzz.py"
LOGS = ROOT / "build" / "soak"


def fuzz_tests() -> list[str]:
    """The hypothesis tests of test_fuzz.py (decorated with @given)."""
    tree = ast.parse(FUZZ.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Call) and getattr(d.func, "id", "") == "given"
            for d in node.decorator_list
        ):
            names.append(node.name)
    return names


def run(name: str, examples: int) -> dict:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"fuzz-{name}.log"
    env = {**os.environ, "FUZZ_EXAMPLES": str(examples), "HYPOTHESIS_PROFILE": "long"}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--hypothesis-show-statistics", f"{FUZZ}::{name}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - start
    log.write_text(proc.stdout + proc.stderr)
    passing = sum(int(n) for n in re.findall(r"(\d+) passing examples?", proc.stdout))
    invalid = sum(int(n) for n in re.findall(r"(\d+) invalid examples?", proc.stdout))
    failing = sum(int(n) for n in re.findall(r"(\d+) failing examples?", proc.stdout))
    stopped = re.search(r"Stopped because (.*)", proc.stdout)
    return {
        "name": name,
        "passing": passing,
        "invalid": invalid,
        "failing": failing,
        "seconds": seconds,
        "ok": proc.returncode == 0,
        "stopped": stopped.group(1).strip() if stopped else "",
        "log": log,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--examples", type=int, default=100_000)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("-k", "--only", default="", help="run the tests whose name contains this")
    args = parser.parse_args()
    names = [n for n in fuzz_tests() if args.only in n]
    print(f"{len(names)} tests x {args.examples} examples, {args.jobs} at a time", flush=True)
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for r in pool.map(lambda n: run(n, args.examples), names):
            results.append(r)
            verdict = "ok" if r["ok"] else f"FAILED (see {r['log']})"
            print(f"{r['name']:55} {r['passing']:>8} passing {r['invalid']:>7} invalid "
                  f"{r['seconds']:>7.0f} s  {verdict}", flush=True)  # fmt: skip
    print()
    print("| fuzzed | examples passed | invalid (filtered) | seconds | result |")
    print("|---|---|---|---|---|")
    for r in results:
        result = "no failure" if r["ok"] else f"**{r['failing']} failing**"
        print(f"| `{r['name']}` | {r['passing']:,} | {r['invalid']:,} | {r['seconds']:.0f} "
              f"| {result} |".replace(",", " "))  # fmt: skip
    total = sum(r["passing"] for r in results)
    print(f"\n{total:,} examples in all".replace(",", " "))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
