-- The replica that authored each operation's action (NULL when unknown: rows written before this column, or an
-- action without one), so a pull can leave out the puller's own actions without decoding them.
ALTER TABLE operations ADD COLUMN replica TEXT;
