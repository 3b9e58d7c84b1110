"""How long the listener waits before trying again, after a drop or a refusal.

A drop is retried soon, then less and less often (so a Kavkom outage is not hammered); a
refusal that retrying cannot fix gets one long pause instead. Kept apart so the delays
are one value the tests can shorten.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.backoff import exponential_delay


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: exponential with jitter, and a long one after a refusal."""

    initial_s: float = 1.0
    cap_s: float = 60.0
    # After a refusal that retrying will not fix (refresh token refused, 406, 404).
    refused_s: float = 600.0

    def delay(self, attempt: int) -> float:
        """Attempt 1, 2, 3... waits about initial, twice that, four times... up to the cap
        (`worker.core.backoff.exponential_delay`: a fleet that lost Kavkom together does not
        come back in lockstep)."""
        return exponential_delay(attempt - 1, initial_s=self.initial_s, cap_s=self.cap_s)
