"""Kwebbl's OAuth 2: connecting the company account, storing its tokens, refreshing them.

Source: Kwebbl Realtime API (PDF, rev. 17), "Authorization Code Grant Flow" (``GET /authorize``, the
redirect back with ``code`` and ``state``, ``POST /token`` with a JSON body and HTTP Basic
client credentials, not both Basic and body credentials) and "Restoring / Renewing an
Access Token" (``grant_type=refresh_token``; "any previously acquired access or refresh
token will be invalidated right after requesting these new tokens").

That last sentence shapes this module. A refresh token works once, so two processes
must never refresh at the same moment: the second presents a refresh token the first has
just spent and is refused (callhook would then ask for reconnection although a good pair
exists), or, if the requests cross, the pair stored last may be one Kwebbl has already
invalidated. Refreshes are therefore serialised across processes with a Redis lock, and
whoever gets the lock reads the row again first: if another process refreshed meanwhile,
its token is used as it is.

The pair is stored sealed (``worker.core.secret_box``) in ``platform_credentials``. A refresh
Kwebbl refuses (400/401: ``invalid_grant`` and friends) marks the row ``reauthorize``: only
an administrator connecting the account again (``/connect/kwebbl``) repairs that. Errors
are ``ClickToCallError``s, the kind the click-to-call client lets through to the agent;
no message or log line holds a token or the client secret.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import redis
import requests
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import select

from worker.core.db import session_scope
from worker.core.models import PlatformCredential, utcnow
from worker.core.redaction import short_text
from worker.core.redis_conn import connect
from worker.core.secret_box import UnreadableSecret, seal, unseal
from worker.core.settings import Settings, get_settings
from worker.telephony.base import (
    ClickToCallError,
    TransportFailure,
    json_object,
    new_session,
    send,
)

log = logging.getLogger("callhook.kwebbl")

PLATFORM = "kwebbl"
CONNECTED = "connected"
REAUTHORIZE = "reauthorize"

CONNECT_PATH = "/connect/kwebbl"
CALLBACK_PATH = "/connect/kwebbl/callback"
# itsdangerous salts: a token signed for one purpose is refused for the other.
CONNECT_LINK_SALT = "callhook-kwebbl-connect-link"
STATE_SALT = "callhook-kwebbl-oauth-state"
CONNECT_LINK_MAX_AGE_S = 30 * 60
# Long enough to sign in to Kwebbl and consent, short enough that a leaked one is stale.
STATE_MAX_AGE_S = 10 * 60

# A token this close to its end is refreshed before use, so a request never leaves with
# a token that expires on the way.
REFRESH_MARGIN = timedelta(seconds=60)
# the documentation's example answers 900 s (its text says "usually ... 14 days"): when Kwebbl
# omits expires_in, the short one is assumed; refreshing early costs one request.
DEFAULT_EXPIRES_IN_S = 900
TOKEN_TIMEOUTS = (5.0, 15.0)  # (connect, read) seconds for POST /token
LOCK_NAME = "callhook:kwebbl:token-refresh"
# The lock outlives the slowest refresh (both timeouts above) with room to write the row,
# so it never expires under a refresh in progress; a waiter waits for one such refresh.
LOCK_TIMEOUT_S = 60
LOCK_WAIT_S = sum(TOKEN_TIMEOUTS) + 2

# the documentation's own error example is not JSON ("'error': 'invalid_grant', ..."), so the code
# is also looked for in the text and in the WWW-Authenticate header.
_OAUTH_ERROR = re.compile(
    r"\b(invalid_request|invalid_client|invalid_grant|unauthorized_client|"
    r"unsupported_grant_type|invalid_scope|server_error)\b"
)


class KwebblAuthError(ClickToCallError):
    """callhook has no usable Kwebbl token; ``code`` says why.

    ``not_configured`` (KWEBBL_CLIENT_ID/SECRET), ``not_connected`` (never connected),
    ``reauthorize`` (Kwebbl refused the refresh), ``unreadable`` (SECRET_KEY changed),
    ``code_refused`` (the authorization code was refused), ``unavailable`` (Kwebbl or
    Redis could not be reached: try again).
    """


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class Stored:
    """The row, decrypted."""

    access_token: str
    refresh_token: str
    expires_at: datetime
    scope: str

    def expiring(self) -> bool:
        return self.expires_at - utcnow() <= REFRESH_MARGIN


@dataclass(frozen=True)
class ConnectionStatus:
    """What ``callhook kwebbl status`` shows; never a token."""

    state: str  # not_connected | connected | reauthorize | unreadable
    expires_at: datetime | None = None
    scope: str = ""
    reason: str | None = None
    updated_at: datetime | None = None


# -- links and URLs ------------------------------------------------------------------------
def base_url(settings: Settings | None = None) -> str:
    """PUBLIC_BASE_URL, or the local address the CLI prints links with."""
    settings = settings or get_settings()
    return settings.public_base_url.rstrip("/") or f"http://127.0.0.1:{settings.port}"


def connect_url(settings: Settings | None = None) -> str:
    return base_url(settings) + CONNECT_PATH


def _reconnect_hint(settings: Settings) -> str:
    return (
        f"An administrator must connect Kwebbl again at {connect_url(settings)} "
        "(`callhook kwebbl connect-link` prints the link to open)."
    )


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().signing_key(), salt=salt)


def new_connect_link_token() -> str:
    """The ``k`` of an admin's connect link: signed, good for 30 minutes, for this only."""
    return str(_serializer(CONNECT_LINK_SALT).dumps({"purpose": "kwebbl-connect"}))


def connect_link_is_valid(token: str) -> bool:
    try:
        data = _serializer(CONNECT_LINK_SALT).loads(token, max_age=CONNECT_LINK_MAX_AGE_S)
    except BadSignature:  # SignatureExpired is one too
        return False
    return data == {"purpose": "kwebbl-connect"}


def new_state() -> tuple[str, str]:
    """(state for Kwebbl, nonce for the browser's cookie): the state is the signed nonce."""
    nonce = secrets.token_urlsafe(24)
    return str(_serializer(STATE_SALT).dumps(nonce)), nonce


def state_problem(state: str | None, nonce: str | None) -> str | None:
    """Why a callback's ``state`` is refused, or None when it is this browser's, unexpired."""
    if not state:
        return "Kwebbl sent no state back."
    try:
        signed = _serializer(STATE_SALT).loads(state, max_age=STATE_MAX_AGE_S)
    except SignatureExpired:
        return "This sign-in took longer than 10 minutes and has expired."
    except BadSignature:
        return "The state Kwebbl sent back was not made by callhook."
    if not nonce:
        return "This browser did not start this sign-in (its cookie is missing)."
    if not (isinstance(signed, str) and secrets.compare_digest(signed, nonce)):
        return "This sign-in was started in another browser or tab."
    return None


def client_credentials(settings: Settings) -> tuple[str, str]:
    secret = settings.kwebbl_client_secret
    client_secret = secret.get_secret_value().strip() if secret is not None else ""
    client_id = settings.kwebbl_client_id.strip()
    if not (client_id and client_secret):
        raise KwebblAuthError(
            "KWEBBL_CLIENT_ID and KWEBBL_CLIENT_SECRET must be set on the server: they are "
            "shown when the application is created in Kwebbl's Company Panel.",
            code="not_configured",
        )
    return client_id, client_secret


def authorize_url(redirect_uri: str, state: str) -> str:
    """Where the admin's browser goes to sign in to Kwebbl and grant callhook access."""
    settings = get_settings()
    client_id, _ = client_credentials(settings)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
            "scope": " ".join(settings.kwebbl_scopes.split()),
        }
    )
    return f"{settings.kwebbl_auth_base_url.rstrip('/')}/authorize?{query}"


# -- POST /token -----------------------------------------------------------------------------
def _post_token(settings: Settings, body: dict[str, str]) -> requests.Response:
    """One request: no transport retry (retries live in one layer, the caller's).

    A refresh whose answer is lost (read timeout) may have spent the stored refresh token;
    the next attempt then finds out, and a refusal asks for reconnection.
    """
    client_id, client_secret = client_credentials(settings)
    url = settings.kwebbl_auth_base_url.rstrip("/") + "/token"
    session = new_session()
    try:
        # Client credentials in the Basic header only: "using both the authorization header
        # and adding the Client ID and Secret in the request body is not allowed".
        response = send(
            session,
            "POST",
            url,
            timeouts=TOKEN_TIMEOUTS,
            json=body,
            auth=(client_id, client_secret),
            headers={"Accept": "application/json"},
        )
    except TransportFailure as exc:
        if exc.kind == TransportFailure.BAD_URL:
            raise KwebblAuthError(
                "KWEBBL_AUTH_BASE_URL is not a valid URL; an administrator must fix it.",
                code="not_configured",
            ) from exc
        raise KwebblAuthError(
            "callhook could not reach Kwebbl's token service; try again in a moment.",
            code="unavailable",
            retryable=True,
        ) from exc
    finally:
        session.close()
    if 300 <= response.status_code < 400:
        raise KwebblAuthError(
            "Kwebbl's token service answered with a redirect: KWEBBL_AUTH_BASE_URL looks "
            "wrong; an administrator must check it.",
            status=response.status_code,
            code="not_configured",
        )
    return response


def _refusal(response: requests.Response, hidden: list[str]) -> tuple[str | None, str]:
    """(OAuth error code, a readable reason) of a refused token request."""
    body = json_object(response)
    code = body.get("error") if isinstance(body.get("error"), str) else None
    said = body.get("error_description") or body.get("message") or ""
    if code is None:
        found = _OAUTH_ERROR.search(
            response.text[:2000] + " " + response.headers.get("WWW-Authenticate", "")
        )
        code = found.group(1) if found else None
    code = code or (body.get("error_code") if isinstance(body.get("error_code"), str) else None)
    reason = f"HTTP {response.status_code}" + (f" {code}" if code else "")
    said = short_text(said, hidden)
    return code, reason + (f": {said}" if said else "")


def _pair(response: requests.Response) -> TokenPair | None:
    body = json_object(response)
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
        return None
    try:
        expires_in = int(body["expires_in"])
    except (KeyError, TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN_S
    return TokenPair(access, refresh, max(expires_in, 0))


def _transient(response: requests.Response, what: str) -> KwebblAuthError:
    status = response.status_code
    why = "its answer held no tokens" if 200 <= status < 300 else f"HTTP {status}"
    return KwebblAuthError(
        f"Kwebbl could not {what} right now ({why}); try again in a moment.",
        status=response.status_code,
        code="unavailable",
        retryable=True,
    )


# -- the stored pair ----------------------------------------------------------------------------
def _row() -> PlatformCredential | None:
    with session_scope() as session:
        return session.exec(
            select(PlatformCredential).where(PlatformCredential.platform == PLATFORM)
        ).first()


def _decrypt(row: PlatformCredential, settings: Settings) -> Stored:
    try:
        return Stored(
            unseal(row.access_token), unseal(row.refresh_token), row.expires_at, row.scope
        )
    except UnreadableSecret:
        # Not written to the row: a process started with a wrong SECRET_KEY must not break
        # the others that still read the tokens.
        log.warning("kwebbl.tokens_unreadable (SECRET_KEY changed?)")
        raise KwebblAuthError(
            "callhook cannot decrypt its Kwebbl tokens: SECRET_KEY changed since Kwebbl was "
            "connected. " + _reconnect_hint(settings),
            code="unreadable",
        ) from None


def _load(settings: Settings) -> Stored:
    """The usable pair, or the error saying what an administrator must do."""
    row = _row()
    if row is None:
        raise KwebblAuthError(
            "Kwebbl is not connected to callhook yet. An administrator must connect it at "
            f"{connect_url(settings)} (`callhook kwebbl connect-link` prints the link to open).",
            code="not_connected",
        )
    if row.status != CONNECTED:
        raise KwebblAuthError(
            f"Kwebbl no longer accepts callhook's authorization: {row.error or row.status}. "
            + _reconnect_hint(settings),
            code="reauthorize",
        )
    return _decrypt(row, settings)


def _save(pair: TokenPair, scope: str | None) -> Stored:
    """Store a new pair (sealed) and mark the account connected."""
    now = utcnow()
    expires_at = now + timedelta(seconds=pair.expires_in)
    with session_scope() as session:
        row = session.exec(
            select(PlatformCredential).where(PlatformCredential.platform == PLATFORM)
        ).first()
        if row is None:
            row = PlatformCredential(
                platform=PLATFORM, access_token="", refresh_token="", expires_at=expires_at
            )
        row.access_token = seal(pair.access_token)
        row.refresh_token = seal(pair.refresh_token)
        row.expires_at = expires_at
        if scope is not None:
            row.scope = scope[:500]
        row.status = CONNECTED
        row.error = None
        row.updated_at = now
        session.add(row)
        return Stored(pair.access_token, pair.refresh_token, expires_at, row.scope)


def _mark_reauthorize(reason: str) -> None:
    with session_scope() as session:
        row = session.exec(
            select(PlatformCredential).where(PlatformCredential.platform == PLATFORM)
        ).first()
        if row is not None:
            row.status = REAUTHORIZE
            row.error = reason
            row.updated_at = utcnow()
            session.add(row)


class _RefreshLock:
    """The cross-process lock every writer of the pair holds (refresh and connect)."""

    def __enter__(self) -> _RefreshLock:
        self.client = connect()
        self.lock = self.client.lock(
            LOCK_NAME, timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_WAIT_S
        )
        try:
            acquired = self.lock.acquire()
        except redis.RedisError as exc:
            self.client.close()
            raise KwebblAuthError(
                "callhook could not reach Redis to renew its Kwebbl token safely; try again "
                "in a moment.",
                code="unavailable",
                retryable=True,
            ) from exc
        if not acquired:
            self.client.close()
            raise KwebblAuthError(
                "Another callhook process is renewing the Kwebbl token and it is taking "
                "long; try again in a moment.",
                code="unavailable",
                retryable=True,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.lock.release()
        except redis.RedisError:  # LockNotOwnedError: it expired, someone else may hold it
            log.warning("kwebbl.refresh_lock_lost")
        finally:
            self.client.close()


def _refresh(settings: Settings, stored: Stored) -> Stored:
    """Spend the refresh token (holding the lock) and store the new pair."""
    response = _post_token(
        settings, {"grant_type": "refresh_token", "refresh_token": stored.refresh_token}
    )
    hidden = [stored.access_token, stored.refresh_token, *client_credentials(settings)]
    if response.status_code in (400, 401):
        code, reason = _refusal(response, hidden)
        reason = f"Kwebbl refused the token refresh ({reason})"
        _mark_reauthorize(reason)
        log.warning("kwebbl.refresh_refused status=%s error=%s", response.status_code, code)
        hint = _reconnect_hint(settings)
        if code == "invalid_client":
            # Regenerating the client secret in Kwebbl's Company Panel also voids every token.
            hint = "Check KWEBBL_CLIENT_ID and KWEBBL_CLIENT_SECRET first. " + hint
        raise KwebblAuthError(f"{reason}. {hint}", status=response.status_code, code="reauthorize")
    pair = _pair(response) if 200 <= response.status_code < 300 else None
    if pair is None:
        # The old pair may or may not be spent: the next attempt finds out (a refusal
        # then asks for reconnection).
        log.warning("kwebbl.refresh_failed status=%s", response.status_code)
        raise _transient(response, "renew callhook's access token")
    fresh = _save(pair, None)
    log.info("kwebbl.token_refreshed expires_in=%s", pair.expires_in)
    return fresh


# -- the public side ------------------------------------------------------------------------------
def exchange_code(code: str, redirect_uri: str) -> ConnectionStatus:
    """Trade the authorization code for a pair and store it: the account is connected."""
    settings = get_settings()
    response = _post_token(
        settings,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
    )
    if response.status_code in (400, 401, 403):
        error, reason = _refusal(response, [code, *client_credentials(settings)])
        log.warning("kwebbl.connect_refused status=%s error=%s", response.status_code, error)
        raise KwebblAuthError(
            f"Kwebbl refused to complete the connection ({reason}). Start again from the "
            "admin link; if this repeats, check KWEBBL_CLIENT_ID, KWEBBL_CLIENT_SECRET and "
            "the redirect URL registered for the application in Kwebbl's Company Panel.",
            status=response.status_code,
            code="code_refused",
        )
    pair = _pair(response) if 200 <= response.status_code < 300 else None
    if pair is None:
        raise _transient(response, "complete the connection")
    # The lock keeps a refresh of the previous connection from landing after this pair.
    with _RefreshLock():
        _save(pair, " ".join(settings.kwebbl_scopes.split()))
    log.info("kwebbl.connected expires_in=%s", pair.expires_in)
    return connection_status()


def access_token(force_refresh: bool = False, *, rejected: str | None = None) -> str:
    """A current access token, renewed shortly before it expires or when forced.

    ``force_refresh`` after Kwebbl refused a token; ``rejected`` is that token when the
    caller knows it: if the stored one is already another, fresh one (another process
    renewed it), that one is returned without spending the refresh token again.
    """
    settings = get_settings()
    seen = _load(settings)
    if not force_refresh and not seen.expiring():
        return seen.access_token
    stale = rejected if force_refresh and rejected else seen.access_token
    if seen.access_token != stale and not seen.expiring():
        return seen.access_token
    with _RefreshLock():
        # Read again under the lock: a refresh finished while we waited spent the refresh
        # token we read above, and spending it again would be refused.
        now = _load(settings)
        if now.access_token != stale and not now.expiring():
            log.info("kwebbl.token_refreshed_elsewhere")
            return now.access_token
        return _refresh(settings, now).access_token


class OAuthTokens:
    """A click-to-call client's ``token_provider``.

    It remembers the token it handed out, so that the forced refresh following a 401 is
    skipped when another process already replaced that token.
    """

    def __init__(self) -> None:
        self.last: str | None = None

    def __call__(self, *, force_refresh: bool = False) -> str:
        token = access_token(force_refresh, rejected=self.last if force_refresh else None)
        self.last = token
        return token


def connection_status() -> ConnectionStatus:
    row = _row()
    if row is None:
        return ConnectionStatus("not_connected")
    details: dict[str, Any] = {
        "expires_at": row.expires_at,
        "scope": row.scope,
        "updated_at": row.updated_at,
    }
    if row.status != CONNECTED:
        return ConnectionStatus(row.status, reason=row.error, **details)
    try:
        unseal(row.access_token)
        unseal(row.refresh_token)
    except UnreadableSecret:
        return ConnectionStatus(
            "unreadable", reason="the tokens cannot be decrypted: SECRET_KEY changed", **details
        )
    return ConnectionStatus(CONNECTED, **details)


def credential_status() -> str | None:
    """``connected``, ``reauthorize``, or None when Kwebbl was never connected through OAuth."""
    row = _row()
    return row.status if row is not None else None
