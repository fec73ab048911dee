"""``python -m service.client`` is ``reserve transcribe``."""

import sys

from service.client.cli import main

sys.exit(main())
