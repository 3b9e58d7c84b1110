"""Matching that trusts the data (issue #12, goal 5).

- A caller whose number `phonenumbers` calls possible but not valid (a range newer than
  its metadata: +44 7700 900123, Ofcom's drama range) is still matched, on its digits, to
  the contact holding exactly that number; a valid number of another country still is not.
- A failed auxiliary lookup (the account details that make the record link, the contact's
  owner) costs the ringing card that part only: the contact is still shown.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import wait_until
from tests.test_call_logging_e2e import calls_for, cdr, post
from tests.test_screen_pop import (  # noqa: F401  (fixtures)
    _pages_per_agent,
    card,
    live,
    pages,
)
from tests.test_screen_pop import post as post_live
from webhook_receiver.mapping.transforms import to_e164
from worker.core.redis_conn import connect
from worker.crm.hubspot_links import ACCOUNT_KEY


def test_possible_but_not_valid_numbers_are_kept_in_e164_and_extensions_are_not() -> None:
    assert to_e164("447700900123", "FR") == "+447700900123"
    assert to_e164("+44 7700 900123", "FR") == "+447700900123"
    assert to_e164("0612345678", "FR") == "+33612345678"  # valid numbers as before
    assert to_e164("1001", "FR") is None  # an extension
    assert to_e164("12345678", "FR") is None  # +1 234 5678 is "local only": not a caller


def test_a_caller_newer_than_the_metadata_is_logged_on_their_contact(client, hubspot) -> None:  # type: ignore[no-untyped-def]
    uk = hubspot.add_contact(firstname="Jane", lastname="Drama", phone="+44 7700 900123")
    # Same national digits, another country, a valid number: never this caller.
    hubspot.add_contact(firstname="Wrong", lastname="Country", phone="+33 7 70 09 00 12")
    post(client, cdr("possible-uk", number="447700900123"))
    (call,) = wait_until(lambda: calls_for(hubspot, "+447700900123"), timeout=30)
    assert call["associations"]["contacts"] == [uk]
    assert call["properties"]["hs_call_title"] == "Outbound call to Jane Drama"


def test_a_card_loses_only_the_part_whose_lookup_failed(live_server, hubspot, pages) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    owner = hubspot.add_owner("dora@example.com", "Dora", "Owner")
    contact = hubspot.add_contact(firstname="Grace", lastname="Known", company="Navy Labs",
                                  phone="06 12 34 56 71", hubspot_owner_id=owner)  # fmt: skip
    connect().delete(ACCOUNT_KEY)  # the account details are asked for afresh
    hubspot.fail_next(5, 500, path_prefix="/account-info")
    hubspot.fail_next(5, 500, path_prefix="/crm/v3/owners")
    post_live(live_server, live("degrade-1", "ringing", "1001", "33612345671"))
    shown: dict[str, Any] = card(pages["alice"])
    assert shown["contact"]["id"] == contact
    assert shown["contact"]["name"] == "Grace Known"
    assert shown["contact"]["company"] == "Navy Labs"
    assert shown["contact"]["url"] is None  # no account details: no link, nothing else lost
    assert shown["contact"]["owner"] is None
    assert "lookup_error" not in shown
