"""Entry point: `python -m kes --config kes.yaml`, or `python -m kes identity|key|status ...`."""

import sys

from .cli import main

sys.exit(main())
