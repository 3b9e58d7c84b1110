"""What the console shows of a stored delivery's body: secrets hidden, previews short.

Bodies are kept whole and as received, so they can be replayed; before an operator sees
one, values under secret-looking keys and every configured secret's value (webhook
secrets, tokens, SECRET_KEY…) become ``[hidden]``. The Problems page's previews and the
sandbox's prefilled payload share this, so both hide exactly the same things.
"""

from __future__ import annotations

from urllib.parse import urlencode

from webhook_receiver.deliveries.auth import configured_secrets
from worker.core.redaction import Redactor, secret_values
from worker.core.settings import get_settings
from worker.crm.mapping_files import MappingFiles

PREVIEW_CHARS = 400
# How much of a body is read for its preview: ten times the preview, so that a secret is
# never cut in two inside what is shown (a body this long is masked as text, not parsed).
READ_CHARS = 4000
HIDDEN = "[hidden]"


def known_secrets(files: MappingFiles) -> list[str]:
    """Every secret value this process can see, longest first (a secret inside another)."""
    envs = [env for m in files.platforms.values() for env in m.auth.secret_envs]
    values = set(secret_values(get_settings(), envs))
    for mapping in files.platforms.values():
        values.update(configured_secrets(mapping.auth))  # whatever their length
    return sorted((v for v in values if v), key=len, reverse=True)


def redacted_body(text: str, secrets: list[str]) -> str:
    """`text` fit to show an operator: secret-looking keys' values and secrets hidden.

    A body shaped like a form (``a=b&c=d``, no spaces) stays a compact form: the preview
    is one line in a table, not the story page's one field a line.
    """
    redactor = Redactor(secrets, HIDDEN, min_chars=1)  # exactly what `known_secrets` found
    stripped = text.strip()
    if (
        stripped[:1] not in ("{", "[")
        and "=" in stripped
        and not any(c.isspace() for c in stripped)
    ):
        pairs = redactor.pairs(stripped)
        if pairs:
            return urlencode(pairs, safe="[]@:/")
    return redactor.body(text)


def preview(text: str, secrets: list[str]) -> str:
    """The start of a redacted body, one line in a table."""
    shown = redacted_body(text, secrets)
    return shown if len(shown) <= PREVIEW_CHARS else shown[: PREVIEW_CHARS - 1] + "…"
