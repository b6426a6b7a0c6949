"""`python -m benchmarks`: every benchmark, one after the other, with its figures."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    ["benchmarks.ocpp_throughput"],
    ["benchmarks.payments"],
    ["benchmarks.reconnect_storm"],
    ["benchmarks.cluster"],
)


def main() -> int:
    failed = 0
    for module in BENCHMARKS:
        failed |= subprocess.call([sys.executable, "-m", *module])
    return failed


if __name__ == "__main__":
    sys.exit(main())
