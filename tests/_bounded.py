"""Running hostile model files through the loader in a child process under a memory ceiling.

A loader regression (a file that makes it allocate gigabytes, or block) must fail a test, not swap or hang the
machine that runs the suite: the child limits its own address space to what it uses after its imports plus
``HEADROOM``, records each case's outcome (success, or the exception's type and message) and the growth of its
peak resident memory in a JSON-lines file as it goes, and the parent reads whatever was recorded, even when the
child had to be killed at its timeout. Linux only (the address-space limit and /proc).
"""

import json
import os
import subprocess
import sys
import time

HEADROOM = 512 * 1024**2  # bytes of address space a child may add after its imports
GROWTH = 256 * 1024**2  # peak resident memory that one case may add: files of kilobytes need far less


def cap_address_space(headroom=HEADROOM):
    """In the child: limit its address space to its current size plus ``headroom``."""
    import resource  # POSIX only: imported here so that the test modules still import (and skip) elsewhere

    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + headroom, size + headroom))


def _peak_rss():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def record(out, case, action):
    """In the child: run ``action()`` and append its outcome to the open file ``out``."""
    before, start = _peak_rss(), time.perf_counter()
    try:
        action()
        outcome, message = "ok", ""
    except Exception as exc:  # MemoryError and RecursionError included: recorded for the parent to judge
        outcome, message = type(exc).__name__, str(exc)[:2000]
    out.write(
        json.dumps(
            {
                "case": case,
                "outcome": outcome,
                "message": message,
                "growth": _peak_rss() - before,
                "seconds": time.perf_counter() - start,
            }
        )
        + "\n"
    )
    out.flush()


def run_child(script, args, results, timeout):
    """Run ``python script *args`` and return ``(records by case, the child's stderr tail or a timeout note)``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    try:
        done = subprocess.run(
            [sys.executable, str(script), *map(str, args)], env=env, timeout=timeout, capture_output=True, text=True
        )
        note = f"exit status {done.returncode}: {done.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        note = f"killed after {timeout} s"
    records = {}
    if os.path.exists(results):
        with open(results) as lines:
            for line in lines:
                entry = json.loads(line)
                records[entry["case"]] = entry
    return records, note
