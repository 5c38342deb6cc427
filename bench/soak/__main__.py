"""`python -m bench.soak [--quick] [--minutes N] ...`: see bench/soak/__init__.py."""

import sys

from bench.soak.run import main

sys.exit(main())
