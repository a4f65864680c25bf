"""Fault injection: named points inside the writes a kill could interrupt, where a test can widen the window.

With `KEMDY_ADAPTERS_FAULT_PAUSE=<seconds>` in the environment, `pause(point)` sleeps that long at each point
(inside a Trainer checkpoint, between a task export's weights and its config, before a JSON file is renamed into
place), so that a SIGKILL sent at a random moment often lands in the middle of a write. Unset, it does nothing.
The fault-injection test (tests/test_faults.py) uses it to prove that no kill loses finished work.
"""

from __future__ import annotations

import os
import time

ENVIRONMENT = "KEMDY_ADAPTERS_FAULT_PAUSE"


def pause(point: str) -> None:
    delay = os.environ.get(ENVIRONMENT)
    if delay:
        time.sleep(float(delay))
