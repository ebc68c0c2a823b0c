#!/usr/bin/env python3
"""README command 2: set up .venv with the dev tools and run the fast test suite.

    python3 scripts/run_tests.py [pytest args...]

Slow tests (real weights, long runs) are opt-in: `python3 scripts/run_tests.py -m slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from setup_env import ROOT, ensure  # noqa: E402


def main() -> int:
    py = ensure(["dev"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(py), "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
