#!/usr/bin/env python3
"""CPU seconds and wall seconds per stage of one imgbuild run.

Usage: bench/stages.py IMGBUILD ARGS...   (e.g. bench/stages.py target/release/imgbuild build DESC --force ...)

Runs the command with its stage log on stderr and, at every stage start (`imgbuild: NAME ...`)
and end (`imgbuild: NAME done in ...`), reads the process's CPU time from /proc/PID/stat: its own
(every thread's user + system) and its reaped children's (the sandboxed maintainer scripts and
hooks). Prints one line per stage: wall seconds, imgbuild's CPU seconds, the children's CPU
seconds, and the CPU seconds per wall second (how many of the machine's cores the stage kept busy).
"""

import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3; utime 14, stime 15, cutime 16, cstime 17.
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def main():
    proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = re.compile(r"^imgbuild: (.+) \.\.\.$")
    done = re.compile(r"^imgbuild: (.+) done in ")
    t0 = time.monotonic()
    open_stages = {}
    rows = []
    for line in proc.stderr:
        line = line.rstrip("\n")
        now = time.monotonic()
        try:
            own, children = cpu(proc.pid)
        except OSError:
            break
        m = start.match(line)
        if m:
            open_stages[m.group(1)] = (now, own, children)
            continue
        m = done.match(line)
        if m and m.group(1) in open_stages:
            t, o, c = open_stages.pop(m.group(1))
            rows.append((m.group(1), now - t, own - o, children - c))
    _, status, usage = os.wait4(proc.pid, 0)
    total = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(sys.argv[1:])}")
    print(f"{'stage':<16} {'wall s':>7} {'cpu s':>7} {'child s':>8} {'cores':>6}")
    for name, wall, own, children in rows:
        busy = (own + children) / wall if wall > 0 else 0.0
        print(f"{name:<16} {wall:7.2f} {own:7.2f} {children:8.2f} {busy:6.2f}")
    all_cpu = usage.ru_utime + usage.ru_stime
    print(f"{'total':<16} {total:7.2f} {all_cpu:7.2f} {'':>8} {all_cpu / total:6.2f}")
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
