"""Named points at which a test kills the process, as a power cut would: `PIPELINE_FAILPOINT=<name>`.

The resume tests (tests/test_faults.py) kill a run in each phase after training and check that
`resume=` finishes it with nothing written twice. Unset, a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "PIPELINE_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
