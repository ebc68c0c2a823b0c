#!/usr/bin/env python3
"""Batch editing: the same as `imagic-kit batch` (see --help), for `accelerate launch`:

python scripts/batch_edit.py MANIFEST --out DIR
accelerate launch --multi_gpu --num_processes 2 scripts/batch_edit.py MANIFEST --out DIR
"""

import sys

from imagic_kit.cli import main

if __name__ == "__main__":
    sys.exit(main(["batch", *sys.argv[1:]]))
