"""``Retry-After`` read one way for every HTTP peer (HubSpot, the telephony platforms).

RFC 9110 §10.2.3 allows seconds or an HTTP date; HubSpot sends seconds, some proxies
and platforms send dates. A value that is neither is ignored (the caller's backoff
applies), and a negative or past one means "now".
"""

from __future__ import annotations

import email.utils
import math
import time


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())
