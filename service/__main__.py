"""``python -m service`` runs the ``reserve`` console script."""

import sys

from service.cli import main

sys.exit(main())
