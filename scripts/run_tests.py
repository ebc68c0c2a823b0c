#!/usr/bin/env python3
"""README command 2: set up .venv with the dev tools and run the fast test suite.

    python3 scripts/run_tests.py [pytest args...]

Without paths it runs tests/unit and tests/integration (the pyramid's two fast floors); the
end-to-end floor (the browser, `accelerate launch`, the README's commands, killed subprocesses) is
`python3 scripts/run_tests.py tests/e2e`, which CI runs too. Slow tests (real weights, long runs)
are opt-in: `python3 scripts/run_tests.py -m slow tests`.
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
    # without paths pytest runs the testpaths of pyproject.toml: tests/unit and tests/integration
    return subprocess.run([str(py), "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
