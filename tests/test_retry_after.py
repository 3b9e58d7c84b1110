"""One reading of Retry-After for HubSpot and the platforms: seconds or an HTTP date."""

from __future__ import annotations

import email.utils
import time

from worker.core.retry_after import retry_after_seconds
from worker.crm.hubspot import _retry_after


def test_seconds_dates_and_nonsense() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 < (retry_after_seconds(later) or 0) <= 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # past: now
    for nonsense in (None, "", "soon", "inf", "nan"):
        assert retry_after_seconds(nonsense) is None


def test_hubspot_honours_an_http_date_as_the_platforms_do() -> None:
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 40 < (_retry_after({"Retry-After": later}) or 0) <= 60
    assert _retry_after(None) is None
