"""``python -m tools.iotune`` from a checkout: the same as the installed ``iotune`` command.

The implementation lives in :mod:`ioengine.tools.iotune` (installed with the package, so nothing named
``tools`` lands in site-packages); this file only keeps the repository's command working.
"""
import sys

from ioengine.tools.iotune import main

if __name__ == "__main__":
    sys.exit(main())
