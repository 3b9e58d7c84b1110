"""Hiding credentials in text before anyone sees it: one home for what every page shares.

Four places show or send text a platform or a library produced: the call story page
(``worker/reports/call_story/``), the problems page
(``webhook_receiver/web/console/redacted.py``),
the click-to-call clients' error messages (``worker/telephony/*``) and Sentry reports
(``worker/core/error_reporting.py``). They used to carry their own copies of the same three
ideas, and the copies drifted (one masked ``hmac`` keys, another did not). Here they are
once:

- `secret_values`: the values to hide, whatever they are found in (settings' secrets,
  ``*_SECRET``/``*_TOKEN``/``*_KEY``/``*_PASSWORD`` variables, the variables the mappings
  name, the passwords in ``DATABASE_URL``/``REDIS_URL``);
- `secret_key`: a key (JSON field, form field, ``key=value`` in text) whose value is a
  credential whatever it holds;
- `Redactor`: both applied to a body, JSON-like data, a form or plain text, with the
  caller's marker (each page keeps the word its operators know);
- `short_text`: a platform's message fit for an agent's screen (one line, capped).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import SecretStr

from worker.core.settings import Settings

# Shorter values would be found inside ordinary text ("1234") and shred what is shown; no
# real secret is this short (SECRET_KEY and METRICS_TOKEN need 32 bytes).
MIN_SECRET_CHARS = 8
# Every environment variable named like this holds a credential (each mapping's webhook
# secret is one).
SECRET_ENV_NAME = re.compile(r".+_(SECRET|TOKEN|KEY|PASSWORD)$")
# JSON/form keys whose values are credentials, whatever their case or separators.
SECRET_KEY_NAME = re.compile(
    r"secret|token|passw|api[_-]?key|signature|authori[sz]ation|credential|hmac|private[_-]?key",
    re.I,
)
# `"key": "value"`, `key: value` and `key=value` in text that is neither JSON nor a form.
_TEXT_PAIR = re.compile(
    r"""(?P<q>["']?)(?P<key>[\w.\[\]-]+)(?P=q)(?P<sep>\s*[:=]\s*)"""
    r"""(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[^\s&,;}<>"']+))"""
)
# A form or query string with more fields than any platform sends is masked as text.
_MAX_FORM_FIELDS = 2000
_MAX_SHORT_TEXT = 300


def secret_values(settings: Settings, extra_env_names: Iterable[str] = ()) -> set[str]:
    """Every configured secret's value this process can see, `MIN_SECRET_CHARS` or longer."""
    values: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.add(value.get_secret_value().strip())
    generated = settings.instance_dir / "secret_key"  # the one-machine signing key
    if settings.secret_key is None and generated.is_file():
        values.add(generated.read_text().strip())
    names = {n for n in os.environ if SECRET_ENV_NAME.fullmatch(n.upper())}
    for name in (*names, *extra_env_names):
        values.add(os.environ.get(name, "").strip())
    for url in (settings.database_url, settings.redis_url):
        password = urlsplit(url.strip()).password if "://" in url else None
        if password:
            values.add(password)
    return {v for v in values if len(v) >= MIN_SECRET_CHARS}


def secret_key(name: object) -> bool:
    """True when a field named `name` holds a credential (token, secret, password...)."""
    return bool(SECRET_KEY_NAME.search(str(name)))


def values_pattern(secrets: Iterable[str | None]) -> re.Pattern[str] | None:
    """One regex matching any of `secrets`, longest first (a secret inside another)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None


class Redactor:
    """Hides known secret values and the values of secret-looking keys, with `marker`.

    `min_chars` drops values too short to hide safely; a caller that hides exactly the
    secrets it was given (the webhook secrets, whatever their length) passes 1.
    """

    def __init__(
        self, secrets: Iterable[str | None], marker: str, *, min_chars: int = MIN_SECRET_CHARS
    ) -> None:
        self.marker = marker
        self._pattern = values_pattern(s for s in secrets if s and len(s) >= min_chars)

    def text(self, value: str | None) -> str:
        """Known secret values masked wherever they appear."""
        if not value:
            return value or ""
        return self._pattern.sub(self.marker, value) if self._pattern else value

    def data(self, value: Any) -> Any:
        """JSON-like data with credential keys' values and known secret values masked."""
        if isinstance(value, dict):
            return {
                (self.text(k) if isinstance(k, str) else k): (
                    self.marker if secret_key(k) and v not in (None, "") else self.data(v)
                )
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def pairs(self, text: str) -> list[tuple[str, str]] | None:
        """A form or query string's fields, masked; None if it has too many to parse."""
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS)
        except ValueError:
            return None
        return [
            (self.text(k), self.marker if secret_key(k) and v else self.text(v)) for k, v in pairs
        ]

    def loose_text(self, text: str) -> str:
        """Text that is neither JSON nor a form: ``key=value``-looking credentials masked."""

        def hide(m: re.Match[str]) -> str:
            if not secret_key(m["key"]):
                return m.group(0)
            quote = '"' if m["dq"] is not None else "'" if m["sq"] is not None else ""
            return f"{m['q']}{m['key']}{m['q']}{m['sep']}{quote}{self.marker}{quote}"

        return self.text(_TEXT_PAIR.sub(hide, text))

    def form(self, text: str) -> str:
        """A query string or form body, credential fields masked (decoded, one per line)."""
        pairs = self.pairs(text)
        if pairs is None:
            return self.loose_text(text)
        return "\n".join(f"{k}={v}" for k, v in pairs)

    def body(self, text: str, content_type: str = "") -> str:
        """A body made safe and readable: JSON pretty-printed, a form (by its content
        type) one field a line, anything else with ``key=value`` credentials masked."""
        stripped = text.strip()
        if stripped[:1] in ("{", "["):
            try:
                parsed = json.loads(stripped)
            except (ValueError, RecursionError):
                pass
            else:
                return json.dumps(self.data(parsed), indent=2, ensure_ascii=False)
        if "x-www-form-urlencoded" in content_type:
            return self.form(text)
        return self.loose_text(text)


def short_text(text: object, secrets: Iterable[str | None] = (), marker: str = "[hidden]") -> str:
    """A platform's text made safe to show an agent: secrets masked, one line, capped."""
    clean = " ".join(str(text or "").split())
    pattern = values_pattern(secrets)
    if pattern is not None:
        clean = pattern.sub(marker, clean)
    if len(clean) > _MAX_SHORT_TEXT:
        clean = clean[: _MAX_SHORT_TEXT - 1] + "…"
    return clean
