#!/usr/bin/env python3
"""The validating floor's parser part with simdjson (C++, through pysimdjson), the fastest
validating JSON parser known: every file of a list inflated into memory first (not timed), then
each parsed whole with simdjson's DOM parser, which checks everything (UTF-8, grammar, numbers),
round after round. Prints the median and the fastest round, in ms and ns per byte; `make bench`
prints them beside the validating floor (scripts/bench/ceiling), whose `--parser none` run is
the inflating part.

usage: simdjson-floor.py [--rounds N] FILES_LIST
"""
import argparse, statistics, sys, time, zlib

try:
    import simdjson
except ImportError:
    sys.exit("simdjson-floor.py: pysimdjson is not installed (pip install pysimdjson)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("files", help="a file listing the gzip'd logs, one a line")
    a = ap.parse_args()
    paths = [l.strip() for l in open(a.files) if l.strip()]
    docs = []
    for p in paths:
        with open(p, "rb") as f:
            docs.append(zlib.decompress(f.read(), 31))
    total = sum(map(len, docs))
    # It must refuse what a reader refuses, or it is no floor.
    parser = simdjson.Parser()
    for bad in (b'{"Records":[{"a":[1,2,tru]}]}', b'{"Records":[{"a":"\xff"}]}'):
        try:
            parser.parse(bad)
        except ValueError:
            continue
        sys.exit(f"simdjson-floor.py: simdjson took {bad!r} for valid")
    times = []
    for _ in range(a.rounds):
        start = time.perf_counter()
        for d in docs:
            parser.parse(d)
        times.append((time.perf_counter() - start) * 1000)
    med, fast = statistics.median(times), min(times)
    print(f"simdjson, checking {len(docs)} files ({total} bytes of JSON) in memory, {a.rounds} rounds: "
          f"median {med:.0f} ms ({med * 1e6 / total:.2f} ns/B), fastest {fast:.0f} ms ({fast * 1e6 / total:.2f} ns/B)")


if __name__ == "__main__":
    main()
