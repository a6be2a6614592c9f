"""``python -m zoo``: the same CLI as ``zoo``."""

import os
import sys

if getattr(sys.modules.get("zoo"), "__file__", None) is None:
    # A folder named zoo in the current directory (a clone of zoo, say) made `zoo` an empty namespace
    # package that shadows the installed one: import the installed package without the current directory.
    sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]
    for name in [m for m in sys.modules if m == "zoo" or m.startswith("zoo.")]:
        del sys.modules[name]

from zoo.cli import main

main()
