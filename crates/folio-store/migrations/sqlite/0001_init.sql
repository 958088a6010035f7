-- folio's SQLite schema, version 1.
-- One row per sync unit with its head (revision and last hash), so the revision check is one indexed read.
CREATE TABLE IF NOT EXISTS units (
    unit_id      INTEGER PRIMARY KEY,
    document_id  TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    branch       TEXT    NOT NULL,
    revision     INTEGER NOT NULL,
    last_hash    BLOB    NOT NULL,
    last_ts_ms   INTEGER NOT NULL,
    UNIQUE (document_id, scope, branch)
);

-- The log. Clustered by (unit, index) so that rehydrating a unit reads contiguous pages; `ordinal` is the global
-- commit order, assigned by the single writer inside its transaction. `operation` is the whole operation as JSON
-- (the wire format); the other columns repeat what queries filter and check on.
CREATE TABLE IF NOT EXISTS operations (
    unit_id      INTEGER NOT NULL,
    idx          INTEGER NOT NULL,
    ordinal      INTEGER NOT NULL,
    skip         INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    hash         BLOB    NOT NULL,
    error        TEXT,
    operation    TEXT    NOT NULL,
    size         INTEGER NOT NULL, -- bytes of `operation`, so reads can cut chunks by size without loading it
    PRIMARY KEY (unit_id, idx)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS operations_by_ordinal ON operations (ordinal);

-- The header index, derived from `document` scope operations in the same transaction.
CREATE TABLE IF NOT EXISTS documents (
    document_id   TEXT    PRIMARY KEY,
    document_type TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS documents_by_type ON documents (document_type, document_id);

CREATE TABLE IF NOT EXISTS keyframes (
    unit_id    INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    last_hash  BLOB    NOT NULL,
    state      TEXT    NOT NULL,
    state_hash BLOB    NOT NULL,
    PRIMARY KEY (unit_id, revision)
) WITHOUT ROWID;
