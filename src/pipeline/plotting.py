"""matplotlib's pyplot on the Agg backend, imported when the first figure is drawn.

A run's process hands its figures to the rendering worker (`pipeline.rendering`), so importing
matplotlib as the command starts (0.3-0.6 s of every process on 2 cores, docs/dependencies.md
"Start-up and exit") would be paid for figures that process never draws. The drawing modules ask
for pyplot here, inside the functions that draw.
"""

from __future__ import annotations

import sys
from types import ModuleType


def pyplot() -> ModuleType:
    """`matplotlib.pyplot`, on the non-interactive Agg backend where this process has not imported it yet."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot
