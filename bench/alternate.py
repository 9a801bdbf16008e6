#!/usr/bin/env python3
"""Time several commands side by side, alternating them round by round, and print ratios.

Usage: alternate.py --rounds N [--setup CMD] NAME=CMD NAME=CMD ...

Each round runs every command once, in turn (the order rotates each round so no tool always runs
after the same neighbour), after running --setup (untimed) before each command. Wall time and peak
resident memory (of the command and everything it waited for) are recorded; the summary prints the
median, min and max per command and the ratio of each command's median to the first command's;
CPU seconds (user + system of the command and everything it waited for) likewise, since they
vary less than wall time on a shared machine; each round line shows the 1-minute load average.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


def run(cmd):
    start = time.monotonic()
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {cmd}\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--setup", default="", help="untimed command before each timed one ($NAME is set)")
    ap.add_argument("commands", nargs="+", help="NAME=CMD")
    args = ap.parse_args()
    cmds = []
    for c in args.commands:
        name, _, cmd = c.partition("=")
        cmds.append((name, cmd))
    results = {name: [] for name, _ in cmds}
    for r in range(args.rounds):
        order = cmds[r % len(cmds):] + cmds[: r % len(cmds)]
        for name, cmd in order:
            if args.setup:
                subprocess.run(["bash", "-c", args.setup], check=True, env={**os.environ, "NAME": name})
            wall, rss, cpu = run(cmd)
            results[name].append((wall, rss, cpu))
            load = os.getloadavg()[0]
            print(f"round {r + 1}: {name:<12} {wall:8.3f} s  cpu {cpu:7.3f} s  peak {rss:8.1f} MB  load {load:5.2f}", flush=True)
    print()
    base_name = cmds[0][0]
    base = statistics.median(w for w, _, _ in results[base_name])
    base_cpu = statistics.median(c for _, _, c in results[base_name])
    print(f"{'command':<12} {'median s':>9} {'min s':>8} {'max s':>8} {'peak MB':>8}  ratio {base_name}/command  {'cpu s':>7}  cpu ratio")
    for name, _ in cmds:
        walls = [w for w, _, _ in results[name]]
        med = statistics.median(walls)
        cpu = statistics.median(c for _, _, c in results[name])
        peak = max(m for _, m, _ in results[name])
        ratio = base / med if med else float("nan")
        cpu_ratio = base_cpu / cpu if cpu else float("nan")
        print(f"{name:<12} {med:9.3f} {min(walls):8.3f} {max(walls):8.3f} {peak:8.1f}  {ratio:6.3f}x{'':>{len(base_name) + 9}}{cpu:7.3f}  {cpu_ratio:6.3f}x")


if __name__ == "__main__":
    main()
