#!/usr/bin/env python3
"""Takes part of one core away from the benchmarks, to see how much room their targets have.

Usage: busy-core.py FRACTION SECONDS  -- busy for FRACTION of every 10 ms, asleep for the rest, for SECONDS.
"""
import sys
import time

fraction, seconds = float(sys.argv[1]), float(sys.argv[2])
if not 0 < fraction <= 1:
    sys.exit("FRACTION must be above 0 and at most 1")
period = 0.010
end = time.monotonic() + seconds
while time.monotonic() < end:
    started = time.perf_counter()
    while time.perf_counter() - started < period * fraction:
        pass
    time.sleep(period * (1 - fraction))
