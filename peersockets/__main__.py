"""``python -m peersockets``: the same as the ``peersockets`` command."""

import sys

from .cli import main

sys.exit(main())
