-- What the box's status says of its outbox, the zone a box reports, and hours adopted from a
-- box's own counts when events never reached head office (footfall hq reconcile --adopt).

-- status: `dead_letters` (outbox rows the broker could never take) beside `outbox_backlog`.
ALTER TABLE status_history ADD COLUMN dead_letters integer;
ALTER TABLE store_status ADD COLUMN dead_letters integer;

-- A store's zone may come from its status (`timezone`, the box's IANA zone): config first, then
-- status, then the offset of its first event.
ALTER TABLE stores DROP CONSTRAINT stores_tz_source_check;
ALTER TABLE stores ADD CONSTRAINT stores_tz_source_check CHECK (tz_source IN ('config', 'status', 'offset'));

-- The box's own figures for an hour where reconciliation found head office short. Kept apart from
-- `hourly` (the roll-up of the events head office holds), so events that arrive after all never
-- count twice: the hour reads as the greater of the two, figure by figure.
CREATE TABLE adopted_hours (
    store_id      text NOT NULL REFERENCES stores,
    store_day     date NOT NULL,
    store_hour    smallint NOT NULL CHECK (store_hour BETWEEN 0 AND 23),
    visits        integer NOT NULL,
    reentries     integer NOT NULL,
    member_visits integer NOT NULL,
    unidentified  integer NOT NULL,
    check_id      bigint REFERENCES reconcile_checks ON DELETE SET NULL,  -- the check that adopted it
    adopted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, store_day, store_hour)
);
CREATE INDEX adopted_hours_day ON adopted_hours (store_day);

ALTER TABLE reconcile_differences ADD COLUMN adopted boolean NOT NULL DEFAULT false;

-- What every count view reads: `hourly`, raised to the adopted figures where there are some;
-- `adopted` is true where an adopted figure is above what head office's own events give.
-- (A UNION ALL rather than a FULL JOIN, so a filter on store_day reaches both tables' indexes.)
CREATE VIEW hourly_counts AS
SELECT h.store_id, h.store_day, h.store_hour,
       greatest(h.visits, a.visits) AS visits,
       greatest(h.reentries, a.reentries) AS reentries,
       greatest(h.member_visits, a.member_visits) AS member_visits,
       greatest(h.unidentified, a.unidentified) AS unidentified,
       coalesce(a.visits > h.visits OR a.reentries > h.reentries OR a.member_visits > h.member_visits
                OR a.unidentified > h.unidentified, false) AS adopted
FROM hourly h
LEFT JOIN adopted_hours a ON a.store_id = h.store_id AND a.store_day = h.store_day AND a.store_hour = h.store_hour
UNION ALL
SELECT a.store_id, a.store_day, a.store_hour, a.visits, a.reentries, a.member_visits, a.unidentified,
       (a.visits > 0 OR a.reentries > 0 OR a.member_visits > 0 OR a.unidentified > 0) AS adopted
FROM adopted_hours a
WHERE NOT EXISTS (SELECT 1 FROM hourly h WHERE h.store_id = a.store_id AND h.store_day = a.store_day
                                           AND h.store_hour = a.store_hour);
