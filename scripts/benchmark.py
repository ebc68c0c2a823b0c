#!/usr/bin/env python3
"""Benchmark methods on the shapes world: the same as `imagic-kit bench` (see --help).

python scripts/benchmark.py --suite full --methods sdedit,ddim --model tiny-shapes --out out/bench-full
"""

import sys

from imagic_kit.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
