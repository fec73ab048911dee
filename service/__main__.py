"""``python -m service <command>``: the same commands as the ``reserve`` console script."""

from service.cli import main

raise SystemExit(main())
