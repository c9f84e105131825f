"""``python -m logwarden``."""

import sys

from logwarden.cli import main

sys.exit(main())
