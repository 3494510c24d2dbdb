#!/usr/bin/env python3
"""Who woke whom during one timed command, from `perf script` of a
`perf record -a -e sched:sched_wakeup,sched:sched_switch` (bench/cache.sh,
BENCH_CACHE_SCHED=1). Prints one line: how often the command (argv[1], a
comm such as `tar`) was woken and how many of those wake-ups found its CPU
idle, then the busiest waker -> wakee pairs, with how many of each were sent
to another CPU. A wake-up queued to an idle CPU is recorded there, with the
idle task (`swapper`) as the waker.

Why: on a VM, a wake-up that lands on an idle virtual CPU costs an
interrupt to a halted CPU, tens of microseconds; a `tar` through FUSE makes
one such wake-up per request when the kernel has put it and the file
system's thread on different CPUs, none when they share one."""

import collections
import re
import sys

WAKE = re.compile(
    r"^\s*(?P<waker>\S.*?)\s+\d+\s+\[(?P<cpu>\d+)\]\s+[\d.]+:\s+sched:sched_wakeup:"
    r" comm=(?P<wakee>.*?) pid=\d+ prio=\d+ target_cpu=(?P<target>\d+)"
)
SWITCH = re.compile(
    r"^\s*\S.*?\s+\d+\s+\[(?P<cpu>\d+)\]\s+[\d.]+:\s+sched:sched_switch:"
    r" prev_comm=.*? prev_pid=\d+ .*==> next_comm=.*? next_pid=(?P<next>\d+)"
)


def family(comm):
    """Thread names without their numbers: `fuser-3` and `fuser-7` are one."""
    return re.sub(r"[-/:]?\d+$", "", comm)


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "tar"
    idle_cpus = set()
    pairs = collections.Counter()
    crossing = collections.Counter()
    woken = onto_idle = 0
    for line in sys.stdin:
        switch = SWITCH.match(line)
        if switch:
            cpu = int(switch["cpu"])
            if switch["next"] == "0":
                idle_cpus.add(cpu)
            else:
                idle_cpus.discard(cpu)
            continue
        wake = WAKE.match(line)
        if not wake:
            continue
        pair = (family(wake["waker"]), family(wake["wakee"]))
        pairs[pair] += 1
        crossing[pair] += wake["cpu"] != wake["target"]
        if wake["wakee"] == command:
            woken += 1
            onto_idle += int(wake["target"]) in idle_cpus
    busiest = "; ".join(
        f"{waker} -> {wakee} {count} ({crossing[(waker, wakee)]} across)"
        for (waker, wakee), count in pairs.most_common(5)
    )
    print(
        f"{command} woken {woken} times, {onto_idle} onto an idle CPU;"
        f" busiest: {busiest}"
    )


if __name__ == "__main__":
    main()
