"""Heavy imports with Python's cyclic garbage collector paused, and what they built frozen afterwards.

Importing torch, Lightning and MLflow creates close to a million objects that live as long as the
process. While they are created, the collector keeps running full collections that walk all of
them again (a full collection of that heap takes ~0.5 s on 2 cores): 1.5-2 s of a 6-8 s import
(docs/dependencies.md, "Start-up and exit"). None of it is garbage anyone waits for, so the
collector pauses for the import, and the imported heap is then frozen: moved to the permanent
generation, which later collections (a long run's, the exit's) no longer walk.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_uncollected() -> Iterator[None]:
    """Run the body (the imports) without cyclic collections; where it imported anything, freeze every object
    alive at its end.

    Not collected first: with the collector paused, everything the imports made is still in the
    youngest generation, so any collection would walk all of it, which is what this avoids. The
    cycles the imports left behind (a few MB at most) stay for the process's life. A body that
    found its modules imported already (a sweep's second trial) freezes nothing: what is alive
    then includes an earlier trial's garbage, which must stay collectable.
    """
    was_enabled, modules_before = gc.isenabled(), len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules_before:
            gc.freeze()
        if was_enabled:
            gc.enable()
