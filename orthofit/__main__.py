"""``python -m orthofit``: the same as the ``orthofit`` command."""

import sys

from .cli import main

sys.exit(main())
