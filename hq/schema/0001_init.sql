-- HQ schema v1: what the stores publish, idempotent on (store_id, event_id).
-- Every instant is timestamptz; store_day/store_hour are the store's own local day and hour.
-- No column holds an image or an embedding: only ids, kinds, times and counts arrive from stores.

CREATE TABLE stores (
    store_id    text PRIMARY KEY,
    timezone    text NOT NULL,                -- IANA name, or a fixed offset "+08:00" taken from event times
    tz_source   text NOT NULL CHECK (tz_source IN ('config', 'offset')),
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()   -- HQ clock: the last message of any kind from the box
);

CREATE TABLE visits (
    store_id      text NOT NULL REFERENCES stores,
    event_id      text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('visit', 'reentry')),
    visitor_id    text NOT NULL,
    member_id     text,
    role          text NOT NULL CHECK (role IN ('member', 'visitor')),
    camera_id     text,
    identified    boolean NOT NULL,
    ts            timestamptz NOT NULL,
    first_seen_ts timestamptz NOT NULL,
    store_day     date NOT NULL,               -- of first_seen_ts, as the box counts
    store_hour    smallint NOT NULL CHECK (store_hour BETWEEN 0 AND 23),
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, event_id)
);
CREATE INDEX visits_day ON visits (store_day, store_id);

CREATE TABLE alerts (
    store_id       text NOT NULL REFERENCES stores,
    event_id       text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('arrival', 'appointment')),
    member_id      text NOT NULL,
    visit_event_id text,                       -- arrival
    appointment_id text,                       -- appointment, or the arrival's appointment
    scheduled_at   timestamptz,
    channel        text,
    advisor        text,
    minutes_early  double precision,
    tier           text,
    ts             timestamptz NOT NULL,
    store_day      date NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, event_id)
);
CREATE INDEX alerts_day ON alerts (store_day, store_id);
CREATE INDEX alerts_visit ON alerts (store_id, visit_event_id);

CREATE TABLE no_shows (
    store_id       text NOT NULL REFERENCES stores,
    event_id       text NOT NULL,
    appointment_id text NOT NULL,
    member_id      text NOT NULL,
    scheduled_at   timestamptz NOT NULL,
    grace_minutes  double precision,
    channel        text,
    ts             timestamptz NOT NULL,
    store_day      date NOT NULL,              -- of scheduled_at
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, event_id)
);
CREATE INDEX no_shows_day ON no_shows (store_day, store_id);

-- appointments/upsert as the CRM sent them to the stores: the "booked" side of conversion.
CREATE TABLE appointments (
    store_id       text NOT NULL REFERENCES stores,
    appointment_id text NOT NULL,
    member_id      text NOT NULL,
    scheduled_at   timestamptz NOT NULL,
    channel        text,
    advisor        text,
    store_day      date NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, appointment_id)
);
CREATE INDEX appointments_day ON appointments (store_day, store_id);

CREATE TABLE acks (
    store_id       text NOT NULL REFERENCES stores,
    event_id       text NOT NULL,
    visit_event_id text NOT NULL,
    guide          text,
    ts             timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, event_id)
);
CREATE INDEX acks_visit ON acks (store_id, visit_event_id);

CREATE TABLE status_history (
    store_id       text NOT NULL REFERENCES stores,
    event_id       text NOT NULL,
    state          text NOT NULL CHECK (state IN ('online', 'stopped', 'offline')),
    version        text,
    cameras        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- {camera id: state}, strings only
    storage        text,
    outbox_backlog integer,
    ts             timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, event_id)
);

CREATE TABLE store_status (                   -- the latest status of each box (by the box's ts)
    store_id       text PRIMARY KEY REFERENCES stores,
    event_id       text NOT NULL,
    state          text NOT NULL,
    version        text,
    cameras        jsonb NOT NULL DEFAULT '{}'::jsonb,
    storage        text,
    outbox_backlog integer,
    ts             timestamptz NOT NULL,
    received_at    timestamptz NOT NULL
);

CREATE TABLE store_counts (                   -- the box's own retained `counts`, latest per store day
    store_id      text NOT NULL REFERENCES stores,
    store_day     date NOT NULL,
    event_id      text NOT NULL,
    visits        integer NOT NULL,
    reentries     integer NOT NULL,
    member_visits integer NOT NULL,
    by_hour       integer[] NOT NULL,
    ts            timestamptz NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, store_day)
);

-- Roll-up of visits per store-local hour; incremented only by rows actually inserted, so replays
-- (ON CONFLICT DO NOTHING) never add to it twice.
CREATE TABLE hourly (
    store_id      text NOT NULL REFERENCES stores,
    store_day     date NOT NULL,
    store_hour    smallint NOT NULL,
    visits        integer NOT NULL DEFAULT 0,
    reentries     integer NOT NULL DEFAULT 0,
    member_visits integer NOT NULL DEFAULT 0,
    unidentified  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, store_day, store_hour)
);
CREATE INDEX hourly_day ON hourly (store_day);

CREATE TABLE reconcile_checks (               -- one row per store and day asked
    id          bigserial PRIMARY KEY,
    store_id    text NOT NULL,
    store_day   date NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now(),
    answered    boolean NOT NULL,
    differences integer NOT NULL DEFAULT 0,
    reason      text
);
CREATE INDEX reconcile_checks_store ON reconcile_checks (store_id, store_day, checked_at DESC);

CREATE TABLE reconcile_differences (
    check_id      bigint NOT NULL REFERENCES reconcile_checks ON DELETE CASCADE,
    store_hour    smallint NOT NULL,
    hq_visits     integer NOT NULL,
    store_visits  integer NOT NULL,
    hq_reentries  integer NOT NULL,
    store_reentries integer NOT NULL,
    PRIMARY KEY (check_id, store_hour)
);

CREATE TABLE ingest_errors (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    topic           text NOT NULL,            -- capped
    topic_store_id  text,
    reason          text NOT NULL,
    payload_bytes   integer NOT NULL,
    payload_excerpt text NOT NULL              -- at most the first 512 bytes, decoded with replacement
);
CREATE INDEX ingest_errors_time ON ingest_errors (received_at);
