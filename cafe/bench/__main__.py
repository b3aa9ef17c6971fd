"""``python -m cafe.bench <name> ...``: benchmarks and quality reports."""
from __future__ import annotations

import importlib
import sys

BENCHES = {"seating": "cafe.bench.seating", "clustering": "cafe.bench.clustering", "load": "cafe.bench.load"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHES:
        print("usage: python -m cafe.bench {%s} ..." % "|".join(BENCHES), file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHES[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
