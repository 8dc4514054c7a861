"""``python -m tui.cli``: the ``backprop`` command."""

from __future__ import annotations

import sys

from tui.cli.entry import main

sys.exit(main())
