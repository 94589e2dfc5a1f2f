#!/usr/bin/env python3
"""Side by side in rounds, for a machine whose speed drifts: every command once in turn, round
after round (the first a warm-up), CPU time (user + system) from wait4 and the peak resident
memory of each run; prints the median and the fastest of each, and with --ratios the ratios
the performance goals are stated in (of the medians, of the fastest runs, and the median of
the ratios round by round). `make bench` runs it last.

usage: rounds.py [--rounds N] [--json OUT] [--ratios] NAME=COMMAND ...
"""
import argparse, json, os, shlex, statistics, sys, time


def run(cmd):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        args = shlex.split(cmd)
        try:
            os.execvp(args[0], args)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"rounds.py: `{cmd}` failed ({os.waitstatus_to_exitcode(status)})")
    return (time.perf_counter() - start) * 1000, (usage.ru_utime + usage.ru_stime) * 1000, usage.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json")
    ap.add_argument("--ratios", action="store_true", help="print the goals' ratios (needs the names bench.sh uses)")
    ap.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    a = ap.parse_args()
    cmds = [c.split("=", 1) for c in a.commands]
    times = {name: [] for name, _ in cmds}
    for r in range(a.rounds + 1):
        for name, cmd in cmds:
            t = run(cmd)
            if r:
                times[name].append(t)
    out = {}
    for name, ts in times.items():
        wall, cpu = sorted(t[0] for t in ts), sorted(t[1] for t in ts)
        out[name] = {"wall": statistics.median(wall), "wall_fastest": wall[0],
                     "cpu": statistics.median(cpu), "cpu_fastest": cpu[0],
                     "peak_mib": max(t[2] for t in ts),
                     "rounds": [{"wall": t[0], "cpu": t[1]} for t in ts]}
        o = out[name]
        print(f"{name:34s} wall {o['wall']:8.1f} ms (fastest {o['wall_fastest']:7.1f})   "
              f"CPU {o['cpu']:8.1f} ms (fastest {o['cpu_fastest']:7.1f})   peak {o['peak_mib']:5.1f} MiB")
    if a.ratios:
        # Besides the ratio of the medians, the median of the ratios round by round: on a
        # machine whose speed drifts, the two commands of one round ran under the same drift.
        def ratio(x, y, k):
            index = 0 if k == "wall" else 1
            paired = statistics.median(tx[index] / ty[index] for tx, ty in zip(times[x], times[y]))
            return (f"{out[x][k] / out[y][k]:.2f}x (fastest {out[x][k + '_fastest'] / out[y][k + '_fastest']:.2f}x,"
                    f" round by round {paired:.2f}x)")
        # The goals, each printed when both its commands were run.
        goals = [
            ("one core, built-in pack / floor:", "scan, 1 core", "floor, 1 core", "wall", "1.3x"),
            ("CPU, built-in pack / floor:", "scan", "floor", "cpu", "1.5x"),
            ("folder, wall / floor:", "scan folder", "floor folder", "wall", "0.8x"),
            ("folder, CPU / floor:", "scan folder", "floor folder", "cpu", "1.5x"),
            ("one core, + 990 mixed / built-in pack:", "scan + mixed, 1 core", "scan, 1 core", "cpu", "1.2x"),
            ("one core, + SigmaHQ / built-in pack:", "scan + Sigma, 1 core", "scan, 1 core", "cpu", "1.2x"),
        ]
        for label, x, y, k, goal in goals:
            if x in times and y in times:
                print(f"{label:40s}{ratio(x, y, k)}  (goal <= {goal})")
        # The validating floor (scripts/bench/ceiling): inflating in process with libdeflate and
        # checking the JSON with the fastest parser at hand, nothing else. Where it is above a
        # goal, no reader that checks every byte can meet that goal on this machine.
        floors = [n for n in times if n.startswith("validating floor folder (")]
        if floors and "floor folder" in times:
            for n in floors:
                print(f"{n + ', CPU / floor:':56s}{ratio(n, 'floor folder', 'cpu')}")
            if "validating floor folder, 2 threads" in times:
                print(f"{'validating floor folder, 2 threads, wall / floor:':56s}"
                      f"{ratio('validating floor folder, 2 threads', 'floor folder', 'wall')}")
            best = min(floors, key=lambda n: out[n]["cpu"])
            if "scan folder" in times:
                print(f"folder: the scan's CPU / the validating floor's ({best}): "
                      f"{ratio('scan folder', best, 'cpu')}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
