"""Webhook authentication, configured per platform in its mapping file.

Secrets come from environment variables named in the file (never from the file
itself); several variables, or several comma-separated values in one, are all
accepted so a secret can be rotated without downtime. Comparison is constant-time
on bytes, and nothing here logs a secret or the body.
"""

from __future__ import annotations

import hmac
import os

from flask import Request

from webhook_receiver.mapping.schema import Auth


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
