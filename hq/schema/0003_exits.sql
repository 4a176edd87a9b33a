-- People who crossed a camera's entry line outwards, from the box's own retained `counts`
-- (boxes without an entry line report 0).
ALTER TABLE store_counts ADD COLUMN exits integer NOT NULL DEFAULT 0;
