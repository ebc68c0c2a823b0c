"""``python -m imagic_kit.cli``: the command line, as ``imagic-kit``."""

import sys

from imagic_kit.cli import main

sys.exit(main())
