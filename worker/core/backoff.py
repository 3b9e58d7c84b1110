"""How long to wait before trying again: one exponential backoff with jitter for all.

The CRM sync's Celery retries (``worker/tasks/celery_tasks.py``) and the Kavkom listener's
reconnects
(``webhook_receiver/listeners/kavkom/``) used to compute it each their own way; the
rule is the same, so it is written once.
"""

from __future__ import annotations

import random

# 2^30 times any initial delay is past every cap: the exponent stops there.
_MAX_STEP = 30


def exponential_delay(step: int, *, initial_s: float, cap_s: float) -> float:
    """Step 0, 1, 2... waits about `initial_s`, twice that, four times... up to `cap_s`.

    Half of each delay is random ("equal jitter"): processes that failed together do not
    come back in lockstep, and a delay never shrinks to nothing.
    """
    base = min(cap_s, initial_s * 2 ** min(max(0, step), _MAX_STEP))
    return random.uniform(base / 2, base)
