-- The CRM's appointments/delete, heard by head office as well as by the store: a booking cancelled
-- before the store raised anything for it is not counted as booked in conversion (hq/read.py).

-- One row per cancelled booking: the latest cancellation heard (stamped with the HQ clock).
CREATE TABLE cancellations (
    store_id       text NOT NULL REFERENCES stores,
    appointment_id text NOT NULL,
    cancelled_at   timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, appointment_id)
);

-- The latest appointments/upsert from the CRM for a booking (HQ clock): one after a cancellation
-- books it again. The box's appointments/booked leaves it as it is.
ALTER TABLE appointments ADD COLUMN crm_booked_at timestamptz;
