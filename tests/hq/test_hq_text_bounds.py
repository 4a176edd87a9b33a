"""The box and head office agree on how long a name, tier, channel or advisor may be, through the
real path: a store's messages -> Mosquitto -> the collector -> PostgreSQL.

The box takes these texts from the CRM up to `downlink.max_text_length` (256 characters at most);
an alert or a booking carrying one that long is stored whole at head office, and one character
more is kept as an ingest error, never as a row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support.broker import Broker, mosquitto_path, wait_until
from support.hq import scalar
from support.hq_collector import Store, collecting, config_for

from footfall.sync import events
from footfall.sync.events import AppointmentAlert, AppointmentUpsert, ArrivalAlert

pytestmark = pytest.mark.skipif(mosquitto_path() is None, reason="mosquitto is not installed")


def messages(text: str, marker: str) -> list[tuple[str, events.Payload]]:
    """An arrival with `text` as its tier, an appointment alert and a CRM booking with it as their
    channel and advisor; `marker` is in every id."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    store: dict[str, Any] = {"store_id": "sh-001", "ts": now}
    return [
        (events.ALERT_ARRIVAL, ArrivalAlert(f"m-{marker}", "Li Wei", text, f"v-{marker}", None, {}, **store)),
        (events.ALERT_APPOINTMENT, AppointmentAlert(f"a-{marker}", f"m-{marker}", now, text, text, 5, **store)),
        (events.APPOINTMENTS_UPSERT, AppointmentUpsert(f"b-{marker}", f"m-{marker}", now + timedelta(days=1), text,
                                                       text)),
    ]


def test_the_longest_texts_the_box_takes_are_stored_and_one_more_character_is_an_ingest_error(
        hq_broker: Broker, hq_db: str) -> None:
    longest = "长" * events.MAX_TEXT
    store = Store(hq_broker.port)
    try:
        with collecting(config_for(hq_db, hq_broker.url)):
            for name, payload in messages(longest, "kept") + messages(longest + "x", "refused"):
                store.send(f"footfall/sh-001/{name}", json.dumps(payload.to_json(), ensure_ascii=False).encode())
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM ingest_errors") == 3, 15, "three ingest errors")
            wait_until(lambda: scalar(hq_db, "SELECT count(*) FROM alerts") == 2
                       and scalar(hq_db, "SELECT count(*) FROM appointments") == 1, 15, "the alerts and the booking")
    finally:
        store.close()
    assert scalar(hq_db, "SELECT tier FROM alerts WHERE kind = 'arrival'") == longest
    assert scalar(hq_db, "SELECT channel || advisor FROM alerts WHERE kind = 'appointment'") == longest * 2
    assert scalar(hq_db, "SELECT channel || advisor FROM appointments WHERE appointment_id = 'b-kept'") == longest * 2
    reasons = scalar(hq_db, "SELECT string_agg(reason, ' | ' ORDER BY reason) FROM ingest_errors")
    assert reasons == ("channel is longer than 256 characters | channel is longer than 256 characters | "
                       "tier is longer than 256 characters")
    assert scalar(hq_db, "SELECT count(*) FROM alerts WHERE member_id = 'm-refused'") == 0
