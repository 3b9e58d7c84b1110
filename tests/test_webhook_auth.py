"""One authentication suite for every platform file: good, wrong, missing, rotated secret.

Each shipped mapping says where its secret travels (a header with a scheme, or a query
parameter); the suite reads that from the file and proves the receiver holds to it. A
signing platform (HMAC of the raw body, Standard Webhooks style) is proven the same way
with a mapping written for the test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PLATFORMS, ROOT, WEBHOOK_SECRETS, Environment, load_fixture
from webhook_receiver.mapping import load_mappings
from webhook_receiver.mapping.schema import Auth


# One payload per platform, from its own fixtures (accepted, or known and ignored).
def sample(platform: str) -> str:
    """A fixture of `platform` that maps to events: its golden file says so (a new
    platform needs nothing here, only its fixtures and their golden files)."""
    folder = ROOT / "tests" / "platforms" / platform / "fixtures"
    for golden in sorted(folder.glob("*.events.json")):
        fixture = golden.name.removesuffix(".events.json") + ".json"  # JSON bodies only
        if (folder / fixture).exists() and json.loads(golden.read_text()).get("events"):
            return fixture
    raise AssertionError(f"{platform}: no fixture with events in {folder}")


SHIPPED = list(PLATFORMS)


def credentials(auth: Auth, secret: str | None) -> tuple[dict[str, str], str]:
    """(headers, query string) presenting `secret` where the mapping says it travels."""
    if secret is None:
        return {}, ""
    if auth.location == "header":
        assert auth.header is not None
        value = f"{auth.scheme} {secret}" if auth.scheme else secret
        return {auth.header: value}, ""
    return {}, f"?{auth.param}={secret}"


def deliver(client: Any, platform: str, auth: Auth, secret: str | None):  # type: ignore[no-untyped-def]
    headers, query = credentials(auth, secret)
    body = load_fixture(platform, sample(platform))
    return client.post(f"/webhooks/{platform}{query}", data=body,
                       content_type="application/json", headers=headers)  # fmt: skip


def test_every_shipped_platform_has_a_sample() -> None:
    assert all(sample(platform) for platform in SHIPPED)


@pytest.mark.parametrize("platform", SHIPPED)
def test_good_wrong_missing_and_rotated_secrets(client, platform: str) -> None:  # type: ignore[no-untyped-def]
    auth = load_mappings(ROOT / "mappings").platforms[platform].auth
    assert auth.secret_envs == [f"{platform.upper()}_WEBHOOK_SECRET",
                                f"{platform.upper()}_WEBHOOK_SECRET_PREVIOUS"]  # fmt: skip
    good = deliver(client, platform, auth, WEBHOOK_SECRETS[platform])
    assert good.status_code == 200, good.json
    for secret in ("wrong-secret", None, WEBHOOK_SECRETS[platform][:-1]):
        refused = deliver(client, platform, auth, secret)
        assert refused.status_code == 401, secret
        assert refused.json["error"] == "auth_failed"
        assert WEBHOOK_SECRETS[platform] not in refused.get_data(as_text=True)
    # Rotation: during the change both secrets pass; after it, only the new one.
    previous = f"{platform.upper()}_WEBHOOK_SECRET_PREVIOUS"
    os.environ[previous] = "the-old-secret"
    try:
        assert deliver(client, platform, auth, "the-old-secret").status_code == 200
    finally:
        del os.environ[previous]
    assert deliver(client, platform, auth, "the-old-secret").status_code == 401


SIGNED = """
kind: platform
platform: signer
auth:
  location: signature
  header: webhook-signature
  prefix: "v1,"
  encoding: base64
  secret_encoding: base64
  signed: "{id}.{timestamp}.{body}"
  id_header: webhook-id
  timestamp_header: webhook-timestamp
  tolerance_s: 300
  secret_env: [SIGNER_WEBHOOK_SECRET, SIGNER_WEBHOOK_SECRET_PREVIOUS]
events:
  - fields:
      call_id: call
      stage: {value: cdr}
"""
KEY = base64.b64encode(b"signing-key-of-32-bytes-for-test").decode()
OLD_KEY = base64.b64encode(b"the-previous-key-32-bytes-long!!").decode()


def sign(key: str, msg_id: str, stamp: int, body: bytes) -> str:
    raw = base64.b64decode(key)
    digest = hmac.new(raw, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.fixture
def signed_client(stack: dict[str, Any], tmp_path: Path):  # type: ignore[no-untyped-def]
    from webhook_receiver.web import create_app

    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "signer.yaml").write_text(SIGNED)
    env = Environment()
    env.set({"MAPPINGS_DIR": str(mappings), "SIGNER_WEBHOOK_SECRET": f"whsec_{KEY}"})
    yield create_app({"TESTING": True}).test_client()
    env.restore()


def test_a_signing_platform_is_checked_on_the_raw_body(signed_client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"call": "signed-1"}).encode()
    now = int(time.time())

    def post(headers: dict[str, str], data: bytes = body):  # type: ignore[no-untyped-def]
        return signed_client.post("/webhooks/signer", data=data, headers=headers,
                                  content_type="application/json")  # fmt: skip

    good = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
            "webhook-signature": sign(KEY, "msg_1", now, body)}  # fmt: skip
    assert post(good).status_code == 200
    # Several signatures in the header (the platform rotating its key): any one may match.
    both = {**good, "webhook-signature": f"v1,AAAA {good['webhook-signature']}"}
    assert post(both).status_code == 200
    tampered = post(good, data=body.replace(b"signed-1", b"signed-2"))
    assert (tampered.status_code, tampered.json["reason"]) == (401, "invalid signature")
    old = {**good, "webhook-timestamp": str(now - 3600),
           "webhook-signature": sign(KEY, "msg_1", now - 3600, body)}  # fmt: skip
    assert "outside the ±300 s window" in post(old).json["reason"]
    assert post({**good, "webhook-signature": "v1,not base64!"}).status_code == 401
    missing = post({k: v for k, v in good.items() if k != "webhook-signature"})
    assert (missing.status_code, missing.json["reason"]) == (
        401,
        "missing signature: expected header webhook-signature",
    )
    # Our side rotating: a delivery signed with the previous key passes while it is listed.
    by_old = {**good, "webhook-signature": sign(OLD_KEY, "msg_1", now, body)}
    assert post(by_old).status_code == 401
    os.environ["SIGNER_WEBHOOK_SECRET_PREVIOUS"] = f"whsec_{OLD_KEY}"
    try:
        assert post(by_old).status_code == 200
    finally:
        del os.environ["SIGNER_WEBHOOK_SECRET_PREVIOUS"]


def test_a_timestamp_header_is_ascii_digits_of_sane_length(signed_client) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"call": "signed-2"}).encode()
    now = int(time.time())
    # The current time in Arabic-Indic digits: str.isdigit() and int() both take it, so it
    # passed the window check, signed as those UTF-8 bytes. Standard Webhooks sends ASCII.
    arabic = str(now).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert int(arabic) == now
    for stamp in (arabic, "²", "9" * 5000, "", " ", "-1", "1e9", "0x10"):
        signed = sign(KEY, "msg_2", 0, body)  # whatever it signs: the stamp is refused first
        headers = {"webhook-id": "msg_2", "webhook-timestamp": stamp, "webhook-signature": signed}
        if stamp == arabic:
            digest = hmac.new(base64.b64decode(KEY), f"msg_2.{arabic}.".encode() + body,
                              hashlib.sha256).digest()  # fmt: skip
            headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode()
        response = signed_client.post("/webhooks/signer", data=body, headers=headers,
                                      content_type="application/json")  # fmt: skip
        assert response.status_code == 401, (stamp[:20], response.get_data()[:200])
        assert response.json["reason"] == "missing or malformed timestamp header webhook-timestamp"
