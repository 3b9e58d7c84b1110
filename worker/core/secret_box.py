"""Encrypting secrets callhook stores (platform OAuth tokens) with a key from SECRET_KEY.

Fernet (AES-128-CBC + HMAC): a stolen database dump without the environment reveals
no token. Changing SECRET_KEY makes stored tokens unreadable: the admin connects the
account again.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from worker.core.settings import get_settings


class UnreadableSecret(Exception):
    """Encrypted with another SECRET_KEY (or damaged): connect the account again."""


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"callhook-secret-box:" + get_settings().signing_key().encode())
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def seal(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret("stored secret cannot be decrypted with this SECRET_KEY") from None
