-- Action ids are unique in their sync unit: a writer looks the ids of new actions up before it appends them (a
-- retry of a committed action is answered with the original outcome, a reused id is refused). The operation's id is
-- its action's id; the query must spell the expression the same way (`(operation::json ->> 'id')`).
CREATE INDEX IF NOT EXISTS operations_by_action ON operations (unit_id, (operation::json ->> 'id'));
