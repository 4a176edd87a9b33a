-- Erasure at head office: a member erased at a store (its `members/deleted`) leaves no id here.
-- Their rows stay for the counts with the id removed; a salted hash of the id (never the id)
-- keeps replayed events from before the erasure from bringing it back.

ALTER TABLE alerts ALTER COLUMN member_id DROP NOT NULL;
ALTER TABLE no_shows ALTER COLUMN member_id DROP NOT NULL;
ALTER TABLE appointments ALTER COLUMN member_id DROP NOT NULL;

CREATE TABLE erasure_salt (                   -- one random row, made here; the hashes mean nothing without it
    salt text NOT NULL
);
INSERT INTO erasure_salt SELECT gen_random_uuid()::text || gen_random_uuid()::text;

CREATE TABLE erasures (
    member_key  text PRIMARY KEY,             -- hex sha256 of salt || member id
    erased_at   timestamptz NOT NULL,         -- the store's ts of the first members/deleted: events up to it are scrubbed
    received_at timestamptz NOT NULL DEFAULT now()
);

-- An erasure finds the member's rows without reading whole tables.
CREATE INDEX visits_member ON visits (member_id) WHERE member_id IS NOT NULL;
CREATE INDEX alerts_member ON alerts (member_id) WHERE member_id IS NOT NULL;
CREATE INDEX no_shows_member ON no_shows (member_id) WHERE member_id IS NOT NULL;
CREATE INDEX appointments_member ON appointments (member_id) WHERE member_id IS NOT NULL;
