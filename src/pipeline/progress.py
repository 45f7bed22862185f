"""Progress for long loops: a bar on a terminal, one plain line per step elsewhere (CI logs, files).

Lightning draws its own bar for training; this covers the pipeline's other long work
(building and measuring compressed variants).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

log = logging.getLogger("pipeline")
Item = TypeVar("Item")


def progress(items: Iterable[Item], label: str, describe=str) -> Iterator[Item]:
    """Yield ``items``; show ``label`` with how far along it is (``describe(item)`` names each step)."""
    total = len(items) if isinstance(items, Sized) else None
    if sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(items, desc=label, total=total, leave=False, unit="step") as bar:
            for item in bar:
                bar.set_postfix_str(describe(item))
                yield item
        return
    for index, item in enumerate(items, start=1):
        started = time.perf_counter()
        yield item
        log.info(
            "%s %d/%s %s (%.1f s)",
            label,
            index,
            total if total is not None else "?",
            describe(item),
            time.perf_counter() - started,
        )
