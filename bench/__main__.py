"""``bench/run`` runs this directory as a script: ``python bench [options]``."""

import sys
from pathlib import Path

# A script's sys.path starts with its own directory; the repository root instead makes
# bench and devtools importable as packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
