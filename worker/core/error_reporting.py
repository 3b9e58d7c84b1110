"""Optional error reports to Sentry (``SENTRY_DSN``), scrubbed before they leave.

An error report is a copy of whatever the failing code was holding, sent to a third
party. What callhook holds is sensitive twice over: credentials (webhook secrets, the
HubSpot token, SECRET_KEY, platform tokens, agents' personal links) and customers' data
(phone numbers and names in webhook bodies). So:

- No personal data collected by the SDK (``send_default_pii=False``, or its successor
  ``data_collection`` with every category off), request bodies never attached
  (``max_request_body_size``), and frame local variables off: locals hold payloads and
  tokens that no key-name rule can tell apart from harmless values.
- `scrub_event` (Sentry's ``before_send``) removes the request's body, query string and
  cookies, blanks every header that carries a credential (``Authorization``,
  ``X-Callhook-Agent``, ``X-API-TOKEN``, ``X-Auth-Token``, signature headers...), and then
  replaces every configured secret's value wherever it still appears: an exception
  message quoting a URL, a breadcrumb, a tag. Values come from the settings' secrets,
  the environment's ``*_SECRET``/``*_TOKEN``/``*_KEY``/``*_PASSWORD`` variables (every
  shipped mapping's webhook secret is one), the environment variables the mappings name,
  and the passwords in ``DATABASE_URL`` and ``REDIS_URL`` (`worker.core.redaction.secret_values`,
  shared with the console's pages).
- On SDKs without ``data_collection``, Sentry's own `EventScrubber`, recursive, with
  callhook's header names added, runs first, as a second net keyed on names.

Without ``SENTRY_DSN`` nothing is initialised and the SDK sends nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from worker.core.redaction import secret_values, values_pattern
from worker.core.settings import Settings

if TYPE_CHECKING:
    from sentry_sdk.types import Event as SentryEvent
    from sentry_sdk.types import Hint

log = logging.getLogger("callhook.errors")

FILTERED = "[Filtered]"
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-callhook-agent",
        "x-api-token",
        "x-api-key",
        "x-auth-token",
    }
)
# Headers named like these carry credentials too (X-Kwebbl-Signature, X-Hub-Signature-256...).
_CREDENTIAL_HEADER_WORDS = re.compile(r"signature|token|secret|auth|hmac|api-?key", re.I)
# Header names (partial, any case) the SDK leaves out itself on recent SDKs.
_HEADER_TERMS = [*sorted(CREDENTIAL_HEADERS), "signature", "hmac"]
# Keys whose value is a query string or cookies wherever they appear (breadcrumbs too).
_QUERY_KEYS = frozenset({"query_string", "http.query", "cookies"})

Event = dict[str, Any]


def _credential_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or bool(_CREDENTIAL_HEADER_WORDS.search(lowered))


def make_scrubber(secrets: Iterable[str]) -> Callable[[Event, Any], Event | None]:
    """A ``before_send`` that scrubs an event (a dict, changed in place) of `secrets`."""
    pattern = values_pattern(secrets)

    def hide(text: str) -> str:
        return pattern.sub(FILTERED, text) if pattern is not None else text

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return hide(value)
        if isinstance(value, dict):
            return {
                (hide(k) if isinstance(k, str) else k): (
                    FILTERED if isinstance(k, str) and k.lower() in _QUERY_KEYS and v else walk(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(walk(v) for v in value)
        return value

    def scrub_event(event: Event, hint: Any = None) -> Event | None:
        request = event.get("request")
        if isinstance(request, dict):
            for key in ("data", "query_string", "cookies"):
                if request.get(key):
                    request[key] = FILTERED
            headers = request.get("headers")
            if isinstance(headers, dict):
                for name in headers:
                    if _credential_header(str(name)):
                        headers[name] = FILTERED
            elif isinstance(headers, list):  # [[name, value], ...] is allowed too
                request["headers"] = [
                    [n, FILTERED if _credential_header(str(n)) else v] for n, v in headers
                ]
            url = request.get("url")
            if isinstance(url, str) and "?" in url:
                request["url"] = url.split("?", 1)[0]
        scrubbed = walk(event)
        event.clear()
        event.update(scrubbed)
        return event

    return scrub_event


def _collection_options() -> dict[str, Any]:
    """What the SDK may collect by itself: no PII, no bodies, cookies, queries or locals.

    Recent SDKs replace ``send_default_pii`` (deprecated there) with ``data_collection``,
    per category; older ones (the floor is 2.8) only know the boolean, the locals switch
    and the name-keyed `EventScrubber`. `scrub_event` runs after either.
    """
    try:
        import sentry_sdk.data_collection  # noqa: F401
    except ImportError:
        from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

        return {
            "send_default_pii": False,
            "include_local_variables": False,
            "event_scrubber": EventScrubber(
                denylist=[*DEFAULT_DENYLIST, *sorted(CREDENTIAL_HEADERS)], recursive=True
            ),
        }
    off = {"mode": "off"}
    return {
        "data_collection": {
            "user_info": False,
            "cookies": off,
            "http_headers": {"request": {"mode": "denylist", "terms": _HEADER_TERMS}},
            "http_bodies": [],
            "url_query_params": off,
            "graphql": {"document": False, "variables": False},
            "gen_ai": {"inputs": False, "outputs": False},
            "database_query_data": False,
            "queues": False,
            "stack_frame_variables": False,
        }
    }


def init_error_reporting(settings: Settings, extra_secret_envs: Iterable[str] = ()) -> bool:
    """Start the Sentry SDK when ``SENTRY_DSN`` is set; True if it was started.

    Called by the web app factory and the Celery worker's entry point. Forked children
    (gunicorn workers, Celery's pool) inherit it: the SDK restarts its sending thread
    in a process whose pid changed.
    """
    if settings.sentry_dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.flask import FlaskIntegration

    # Cast: the SDK types its event as a TypedDict, which is a plain dict at run time, the
    # `dict[str, Any]` the scrubber walks and changes in place.
    before_send = cast(
        "Callable[[SentryEvent, Hint], SentryEvent | None]",
        make_scrubber(secret_values(settings, extra_secret_envs)),
    )
    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value().strip(),
        integrations=[FlaskIntegration(), CeleryIntegration()],
        max_request_body_size="never",
        before_send=before_send,
        **_collection_options(),
    )
    log.info("errors.reporting_on sentry=yes")
    return True
