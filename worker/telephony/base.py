"""What every click-to-call client shares: the error an agent reads, the result, one HTTP helper.

Retries live in one layer, the caller's (the Celery task or the web request). The clients
never retry a transport failure: the session's adapters have ``Retry(0, read=False)`` and
every failure surfaces at once as a ``ClickToCallError`` whose ``retryable`` says what the
caller may do. The only repeats inside a client are the ones a platform's protocol asks for
(Kwebbl: one token refresh on a 401; UIS: one wait on ``limit_exceeded``), and both follow
a refusal, so nothing was placed yet.

Placing a call is not idempotent: the platform rings the agent's phone as soon as it
accepts the request. A failure *before* the request left (refused, DNS, connect timeout,
TLS) is retryable; a failure *after* it may have arrived (read timeout, connection dropped
mid-answer, a gateway's 504) is not, because a retry could ring the agent and the customer
twice. The agent is told to check their phone instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError
from urllib3.util.retry import Retry

from worker.core.numbers import dialable_e164
from worker.core.retry_after import retry_after_seconds

# (connect, read) seconds for `requests`; a client whose platform answers slowly says so.
Timeouts = tuple[float, float]
DEFAULT_TIMEOUTS: Timeouts = (5.0, 15.0)


class ClickToCallError(Exception):
    """Why a call could not be placed, in words a sales agent can act on.

    ``message`` never holds a secret: the clients write it themselves and pass any text a
    platform returned through ``worker.core.redaction.short_text`` first. ``retry_after`` is
    in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"ClickToCallError({self.message!r}, status={self.status}, code={self.code!r}, "
            f"retry_after={self.retry_after}, retryable={self.retryable})"
        )


@dataclass(frozen=True)
class PlacedCall:
    """The platform accepted the call; ``call_id`` is its id for it, when it returns one."""

    platform: str
    call_id: str | None
    raw: dict[str, Any] = field(default_factory=dict)


class ClickToCall(Protocol):
    """One platform's click-to-call: ring the agent, then connect them to the destination."""

    def place_call(self, agent: str, destination_e164: str) -> PlacedCall:
        """``agent`` is the platform's own identifier for the agent (extension, id, ...)."""
        ...


def parse_destination(destination_e164: str, platform: str) -> str:
    """The destination as canonical E.164, checked before any request is made.

    Only a valid number in E.164 (``+`` and digits, nothing else) is accepted: a national
    number would be dialled in whatever country the PBX assumes.
    """
    e164 = dialable_e164(destination_e164)
    if e164 is None:
        text = destination_e164 if isinstance(destination_e164, str) else ""
        raise ClickToCallError(
            f"{text[:32]!r} is not a phone number {platform} can call: write it in "
            "international format, e.g. +33612345678.",
            code="invalid_destination",
        )
    return e164


def sub_object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` when it is a JSON object, else {}: platforms answer null, a list or
    nothing where their docs show an object."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def json_object(response: requests.Response) -> dict[str, Any]:
    """The body as a JSON object; ``{}`` when it is empty, not JSON, or not an object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def http_error(
    platform: str, response: requests.Response, message: str, *, code: str | None = None
) -> ClickToCallError:
    """An error for a refused request, retryable only when the platform refused it for now."""
    status = response.status_code
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if status == 504:
        # A gateway gave up waiting: the platform may still be placing the call.
        return ClickToCallError(
            f"{platform} did not confirm the call in time. It may still ring: check your "
            "phone before trying again.",
            status=status,
            code=code or "outcome_unknown",
        )
    if status == 429:
        return ClickToCallError(
            f"{platform} is receiving too many requests right now; try again in a moment.",
            status=status,
            code=code or "rate_limited",
            retry_after=retry_after,
            retryable=True,
        )
    transient = status == 408 or status >= 500
    return ClickToCallError(
        message, status=status, code=code, retry_after=retry_after, retryable=transient
    )


def new_session() -> requests.Session:
    """A session that never retries by itself (see the module docstring)."""
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=Retry(0, read=False, redirect=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class TransportFailure(Exception):
    """A request that got no answer, classified once for every caller (see `send`).

    ``kind`` is `BAD_URL` (the configured address is not a URL: nothing was sent),
    `UNREACHABLE` (the request never left: refused, DNS, connect timeout, TLS; safe to
    retry) or `OUTCOME_UNKNOWN` (it may have arrived: read timeout, dropped mid-answer;
    retrying could do the thing twice). ``error`` is the `requests` exception's type name,
    which never holds a URL or a header; the exception itself is the ``__cause__``.
    """

    BAD_URL = "bad_url"
    UNREACHABLE = "unreachable"
    OUTCOME_UNKNOWN = "outcome_unknown"

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(f"{kind} ({error})")
        self.kind = kind
        self.error = error


def send(
    session: requests.Session, method: str, url: str, *, timeouts: Timeouts, **kwargs: Any
) -> requests.Response:
    """One request, redirects not followed (a redirect means a wrong address, and following
    it would carry the credentials elsewhere); every `requests` failure becomes a
    `TransportFailure`. What a refusal or a failure *means* stays with each caller: a
    click-to-call client, an administrator's command and the token service say different
    things, but they all read the failure the same way here."""
    try:
        return session.request(method, url, timeout=timeouts, allow_redirects=False, **kwargs)
    except requests.RequestException as exc:
        raise TransportFailure(_failure_kind(exc), type(exc).__name__) from exc


def _failure_kind(exc: requests.RequestException) -> str:
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema,
    ):
        return TransportFailure.BAD_URL
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return TransportFailure.UNREACHABLE
    if isinstance(exc, requests.ConnectionError) and _never_sent(exc):
        return TransportFailure.UNREACHABLE
    return TransportFailure.OUTCOME_UNKNOWN  # read timeout, dropped connection, broken body


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before any byte of the request left."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # urllib3's NameResolutionError is a NewConnectionError too.
    return isinstance(reason, NewConnectionError | ConnectTimeoutError)


class PlatformHttp:
    """One platform's HTTP: no transport retries, fixed timeouts, readable failures.

    Exceptions never carry the request's URL or headers into the message: a URL may hold
    an account id and a header a token.
    """

    def __init__(
        self,
        platform: str,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        session: requests.Session | None = None,
    ):
        self.platform = platform
        self.timeouts = timeouts
        self.session = session if session is not None else new_session()
        self._owns_session = session is None

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        name = self.platform
        try:
            response = send(self.session, method, url, timeouts=self.timeouts, **kwargs)
        except TransportFailure as exc:
            error = {
                TransportFailure.BAD_URL: _config_error,
                TransportFailure.UNREACHABLE: _unreachable,
            }.get(exc.kind, _outcome_unknown)
            raise error(name) from exc.__cause__
        if 300 <= response.status_code < 400:
            raise ClickToCallError(
                f"{name} answered with a redirect: callhook's {name} address looks wrong; "
                "an administrator must check it.",
                status=response.status_code,
                code="redirect",
            )
        return response

    def close(self) -> None:
        if self._owns_session:
            self.session.close()


def _config_error(platform: str) -> ClickToCallError:
    return ClickToCallError(
        f"callhook's {platform} address is not a valid URL; an administrator must fix it.",
        code="bad_base_url",
    )


def _unreachable(platform: str) -> ClickToCallError:
    return ClickToCallError(
        f"callhook could not reach {platform}; try again in a moment.",
        code="unreachable",
        retryable=True,
    )


def _outcome_unknown(platform: str) -> ClickToCallError:
    return ClickToCallError(
        f"{platform} did not answer in time. The call may still ring: check your phone "
        "before trying again.",
        code="outcome_unknown",
    )
