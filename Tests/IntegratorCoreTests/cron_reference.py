#!/usr/bin/env python3
"""Reference fire times for CronExpressionTests, computed by the independent `croniter` package (PyPI).

Input on stdin, JSON:  {"cases": [{"expression": "*/5 * * * *", "start": 1767225600.5, "zone": "UTC", "count": 5}, ...]}
  start is seconds since 1970 (UTC); zone is an IANA zone name.
Output on stdout, JSON: [{"times": ["2026-01-01T00:05:00Z", ...]} or {"error": "..."}, ...], one per case, in order.
If croniter is missing it is installed once with pip; if that fails the script exits with status 3 and says why.
"""
import json
import subprocess
import sys
from datetime import datetime, timezone


def load_croniter():
    try:
        import croniter  # noqa: F401
        return croniter
    except ImportError:
        pass
    attempts = [
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "croniter"],
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--user", "croniter"],
    ]
    errors = []
    for command in attempts:
        finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if finished.returncode == 0:
            import importlib
            import site
            importlib.invalidate_caches()
            if site.ENABLE_USER_SITE and site.getusersitepackages() not in sys.path:
                sys.path.append(site.getusersitepackages())
            try:
                import croniter  # noqa: F401
                return croniter
            except ImportError as error:
                errors.append(f"{' '.join(command)}: installed, but import failed: {error}")
        else:
            errors.append(f"{' '.join(command)}: exit {finished.returncode}: {finished.stderr.strip()[-500:]}")
    sys.stderr.write("cron_reference.py: cannot import croniter and could not install it with pip:\n  "
                     + "\n  ".join(errors) + "\n")
    sys.exit(3)


def main():
    croniter = load_croniter()
    from zoneinfo import ZoneInfo

    request = json.load(sys.stdin)
    zones = {}
    results = []
    for case in request["cases"]:
        try:
            zone = zones.setdefault(case["zone"], ZoneInfo(case["zone"]))
            start = datetime.fromtimestamp(case["start"], tz=timezone.utc).astimezone(zone)
            iterator = croniter.croniter(case["expression"], start)
            times = []
            for _ in range(case["count"]):
                fire = iterator.get_next(datetime)
                times.append(fire.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
            results.append({"times": times})
        except Exception as error:  # reported per case; the Swift side decides what it means
            results.append({"error": f"{type(error).__name__}: {error}"})
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
