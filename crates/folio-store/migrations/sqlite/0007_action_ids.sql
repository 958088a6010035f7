-- Action ids are unique in their sync unit: a writer looks the ids of new actions up before it appends them (a
-- retry of a committed action is answered with the original outcome, a reused id is refused). The operation's id is
-- its action's id and the first member of the stored JSON, so the index is over that expression; the query must
-- spell it the same way (`json_extract(operation, '$.id')`).
CREATE INDEX IF NOT EXISTS operations_by_action ON operations (unit_id, json_extract(operation, '$.id'));
