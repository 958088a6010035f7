-- The log in chunks (docs: ARCHITECTURE.md, "The compact log"). The operations of one append to one unit share a
-- row, up to 1,024 a row, in a binary encoding (`src/sqlite/chunk.rs`): an integration of 50,000 operations is ~50
-- rows instead of 50,000, and an operation takes tens of bytes instead of ~400 of JSON plus its indexes.
-- `ordinal` is the chunk's first operation's ordinal: its operations take `ordinal .. ordinal + count - 1`, so
-- ordinals, cursors and time travel stay per operation. `idx` is its first operation's index: the unique key on
-- `(unit_id, idx)` still refuses a second chunk at an index, and finds the chunk holding an index.
CREATE TABLE log (
    ordinal INTEGER PRIMARY KEY,
    unit_id INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    count   INTEGER NOT NULL,
    -- The author of every action in the chunk when they share one (NULL: several, or unknown), so a pull leaves
    -- out the puller's own chunks without decoding them.
    replica TEXT,
    data    BLOB    NOT NULL,
    UNIQUE (unit_id, idx)
);
-- The skipping operations (a rebase's first operation): readers find a unit's cuts without reading its log.
CREATE TABLE log_skips (
    unit_id INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    skip    INTEGER NOT NULL,
    PRIMARY KEY (unit_id, idx)
) WITHOUT ROWID;
-- Action ids (16 bytes), for `find_actions`: by id first, so time-ordered ids (UUIDv7) append at the table's edge.
-- Replaces migration 0007's expression index over the JSON text.
CREATE TABLE action_ids (
    id      BLOB    NOT NULL,
    unit_id INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    PRIMARY KEY (id, unit_id, idx)
) WITHOUT ROWID;

-- The rows of the older layout move as they are: each run of one unit's operations with consecutive ordinals and
-- indexes (one commit: `ordinal - idx` is constant along it) becomes one chunk of their wire JSON, one a line (the
-- chunk format `{`), cut at every multiple of 1,024 indexes. Ordinals are kept, so sync cursors stay valid.
INSERT INTO log (ordinal, unit_id, idx, count, replica, data)
SELECT MIN(ordinal), unit_id, MIN(idx), COUNT(*),
       CASE WHEN COUNT(replica) = COUNT(*) AND MIN(replica) = MAX(replica) THEN MIN(replica) END,
       CAST(group_concat(operation, char(10) ORDER BY idx) AS BLOB)
FROM operations
GROUP BY unit_id, ordinal - idx, idx / 1024
ORDER BY MIN(ordinal);
INSERT INTO log_skips (unit_id, idx, skip) SELECT unit_id, idx, skip FROM operations WHERE skip > 0;
INSERT OR IGNORE INTO action_ids (id, unit_id, idx)
SELECT unhex(replace(substr(operation, 8, 36), '-', '')), unit_id, idx FROM operations;
DROP TABLE operations;
