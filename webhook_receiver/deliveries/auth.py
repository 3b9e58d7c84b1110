"""Webhook authentication, configured per platform in its mapping file.

Secrets come from environment variables named in the file (never from the file
itself); several variables, or several comma-separated values in one, are all
accepted so a secret can be rotated without downtime. Comparison is constant-time
on bytes, and nothing here logs a secret or the body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import time

from flask import Request

from webhook_receiver.mapping.schema import Auth

# Unix seconds as signing platforms send them (Standard Webhooks: "1674087231"); 12
# digits reach the year 33658.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def configured_secrets(auth: Auth) -> list[str]:
    secrets: list[str] = []
    for name in auth.secret_envs:
        secrets.extend(s.strip() for s in os.environ.get(name, "").split(",") if s.strip())
    return secrets


def presented_secret(auth: Auth, request: Request) -> str | None:
    """The credential the request carries where the mapping says to look, if any."""
    if auth.location == "query":
        assert auth.param is not None
        return request.args.get(auth.param)
    if auth.location == "header":
        assert auth.header is not None
        value = request.headers.get(auth.header)
        if value is None:
            return None
        if auth.scheme:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != auth.scheme.lower():
                return None
            return token.strip()
        return value.strip()
    return None


def check(auth: Auth, request: Request) -> str | None:
    """None when the request is authentic, else the reason to refuse it (for the 401)."""
    if auth.location == "none":
        return None
    secrets = configured_secrets(auth)
    if not secrets:
        return f"{' or '.join(auth.secret_envs)} is not set on the server: webhooks are refused"
    if auth.location == "signature":
        return check_signature(auth, request, secrets, time.time())
    given = presented_secret(auth, request)
    if given is None:
        where = (
            f"query parameter {auth.param!r}"
            if auth.location == "query"
            else (f"header {auth.header}" + (f" with scheme {auth.scheme}" if auth.scheme else ""))
        )
        return f"missing credentials: expected {where}"
    given_bytes = given.encode()
    # Compare against every secret, without stopping early, so timing reveals nothing.
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given_bytes, secret.encode())
    return None if matched else "invalid credentials"


def _key(secret: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            return b""  # a misconfigured secret matches nothing
    return secret.encode()


def _decode(signature: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return bytes.fromhex(signature)
        return base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return None


def check_signature(auth: Auth, request: Request, secrets: list[str], now: float) -> str | None:
    """HMAC of what the platform signs, over the raw bytes (never re-serialised JSON).

    Several signatures in the header (space-separated) and several secrets are all
    tried: either side can rotate. A malformed header is a 401 like any other refusal.
    """
    assert auth.header is not None
    header = request.headers.get(auth.header)
    if not header:
        return f"missing signature: expected header {auth.header}"
    parts: dict[str, bytes] = {"body": request.get_data(cache=True)}
    if auth.timestamp_header:
        stamp = request.headers.get(auth.timestamp_header, "").strip()
        # ASCII digits only: str.isdigit() also takes "١٢٣" and "²" (which int() refuses),
        # and a bounded length keeps int() away from its 4,300-digit limit.
        if not _TIMESTAMP.fullmatch(stamp):
            return f"missing or malformed timestamp header {auth.timestamp_header}"
        if abs(now - int(stamp)) > auth.tolerance_s:
            return f"timestamp outside the ±{auth.tolerance_s} s window (replayed or clock skew)"
        parts["timestamp"] = stamp.encode()
    if auth.id_header:
        parts["id"] = request.headers.get(auth.id_header, "").encode()
    message = _fill(auth.signed, parts)
    presented = [
        decoded
        for token in header.split()
        if token.startswith(auth.prefix)
        and (decoded := _decode(token[len(auth.prefix) :], auth.encoding)) is not None
    ]
    if not presented:
        return f"malformed signature in header {auth.header}"
    matched = False
    for secret in secrets:
        digest = hmac.new(_key(secret, auth.secret_encoding), message, auth.algorithm).digest()
        for candidate in presented:
            matched |= hmac.compare_digest(digest, candidate)
    return None if matched else "invalid signature"


def _fill(template: str, parts: dict[str, bytes]) -> bytes:
    """The signed bytes: the template's text with {body}, {id}, {timestamp} put in."""
    out = b""
    rest = template
    while "{" in rest:
        head, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        out += head.encode() + parts.get(name, b"")
    return out + rest.encode()
