-- Action ids are unique in their sync unit: a writer looks up the ids it cannot vouch for before it appends them (a
-- retry of a committed action is answered with the original outcome, a reused id is refused). The operation's id is
-- its action's id and the first member of the stored JSON (`{"id":"<uuid>",…`, written by serde in field order), so
-- the index is over those 36 characters: no JSON parse per insert. By id alone, not by unit first: ids are UUIDv7
-- (time-ordered), so inserts append to the index's last page instead of splitting one leaf per unit. The query must
-- spell the expression the same way (`substr(operation, 8, 36)`).
CREATE INDEX IF NOT EXISTS operations_by_action ON operations (substr(operation, 8, 36));
