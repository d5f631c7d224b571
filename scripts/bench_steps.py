#!/usr/bin/env python3
"""Per-step cost of `exprun run` of /bin/true against the kernel's floor.

Runs, interleaved round by round, `exprun --debug run IMAGE -- /bin/true` and
scripts/floor/probe (the same syscall sequence and nothing else), and prints
for each step the median time of each and the gap. Called by
scripts/bench-steps.sh, which builds both and makes the state they need.

Usage: bench_steps.py --exprun BIN --root DIR --image REF --probe BIN
                      --lower DIRS --state DIR --rounds N [--json FILE]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

# exprun's --debug lines, in order: (step name, the line's start).
# A step's time is from the previous mark to this one.
MARKS = [
    ("stale-check", "step 1: cleaned up"),
    ("resolve-spec-plan", "step 5: digested"),
    ("run-dir", "step 6: created"),
    ("cgroup-made", "create: cgroup made"),
    ("clone-to-cgroup", "init [1]: in the cgroup"),
    ("session-hostname-loopback", "init [2]:"),
    ("rootfs-pivot", "init [3]:"),
    ("privileges", "init [4]:"),
    ("ready-handshake", "step 8:"),
    ("exec-and-wait", "step 11:"),
    ("record-written", "step 12: record written"),
    ("run-dir-removed", "step 12: run directory removed"),
]
# The probe's steps that have an exprun counterpart; the rest have no floor
# (the probe plans nothing): their floor is 0.
PROBE = {
    "stale-check", "cgroup-made", "clone-to-cgroup", "session-hostname-loopback",
    "rootfs-pivot", "privileges", "exec-and-wait", "record-written",
}
DEBUG = re.compile(r"^exprun: debug:\s+([0-9.]+) ms\s+(.*)$")


def run_exprun(args):
    t0 = time.monotonic()
    p = subprocess.run(
        [args.exprun, "--root", args.root, "--debug", "run", args.image, "--", "/bin/true"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wall = (time.monotonic() - t0) * 1000
    if p.returncode != 0:
        sys.exit(f"bench-steps: exprun failed ({p.returncode}):\n{p.stderr}")
    stamps = []
    for line in p.stderr.splitlines():
        m = DEBUG.match(line)
        if m:
            stamps.append((float(m.group(1)), m.group(2)))
    out, prev = {}, 0.0
    for name, start in MARKS:
        hit = next((t for t, text in stamps if text.startswith(start)), None)
        if hit is None:
            sys.exit(f"bench-steps: exprun --debug printed no line starting {start!r}:\n{p.stderr}")
        out[name] = hit - prev
        prev = hit
    # Before the first mark: exec, the loader and argument parsing; after the
    # last: exit. Both come from the wall time around the process.
    out["outside-main"] = wall - prev
    out["total"] = wall
    return out


def run_probe(args, i):
    t0 = time.monotonic()
    p = subprocess.run(
        [args.probe, args.lower, args.state, f"exprun-floor-{os.getpid()}-{i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wall = (time.monotonic() - t0) * 1000
    if p.returncode != 0:
        sys.exit(f"bench-steps: probe failed ({p.returncode}):\n{p.stderr}")
    out = {}
    for line in p.stdout.splitlines():
        _, name, us = line.split()
        out[name] = int(us) / 1000
    out["outside-main"] = wall - out["total"]
    out["total"] = wall
    return out


def main():
    ap = argparse.ArgumentParser()
    for a in ("--exprun", "--root", "--image", "--probe", "--lower", "--state"):
        ap.add_argument(a, required=True)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--json")
    args = ap.parse_args()

    for i in range(3):
        run_exprun(args)
        run_probe(args, i)
    ex, fl = [], []
    for i in range(args.rounds):
        # Alternate who goes first, so neither always follows the other.
        if i % 2:
            fl.append(run_probe(args, i))
            ex.append(run_exprun(args))
        else:
            ex.append(run_exprun(args))
            fl.append(run_probe(args, i))

    names = [n for n, _ in MARKS] + ["outside-main", "total"]
    rows = []
    print(f"{'step':28} {'exprun ms':>10} {'floor ms':>9} {'gap ms':>8}   (medians of {args.rounds} interleaved rounds)")
    print("-" * 64)
    for n in names:
        e = statistics.median(r[n] for r in ex)
        f = statistics.median(r[n] for r in fl) if (n in PROBE or n in ("outside-main", "total")) else 0.0
        rows.append({"step": n, "exprun_ms": round(e, 3), "floor_ms": round(f, 3)})
        print(f"{n:28} {e:10.3f} {f:9.3f} {e - f:8.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rounds": args.rounds, "steps": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
