-- folio's PostgreSQL schema, version 1. The same shape as the SQLite schema, for several nodes on one database.

-- One row per sync unit with its head (revision and last hash). A writer locks the rows of the units it appends to
-- (SELECT ... FOR UPDATE, in a fixed order) before its revision check, so two nodes cannot both pass it.
CREATE TABLE units (
    unit_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  TEXT   NOT NULL,
    scope        TEXT   NOT NULL,
    branch       TEXT   NOT NULL,
    revision     BIGINT NOT NULL,
    last_hash    BYTEA  NOT NULL,
    last_ts_ms   BIGINT NOT NULL,
    UNIQUE (document_id, scope, branch)
);

-- The log. The primary key (unit_id, idx) refuses a second operation at an index, whatever a writer checked.
-- `ordinal` is the global commit order, taken from `ordinal_counter` inside the committing transaction (see below).
-- `origin` names the store handle (one per process) that committed the row, so a node can tell its own commits from
-- the ones it must announce to its subscribers. `operation` is the whole operation as JSON (the wire format, as text:
-- the bytes the hash covers).
CREATE TABLE operations (
    unit_id      BIGINT  NOT NULL,
    idx          BIGINT  NOT NULL,
    ordinal      BIGINT  NOT NULL,
    origin       BIGINT  NOT NULL,
    skip         BIGINT  NOT NULL,
    timestamp_ms BIGINT  NOT NULL,
    hash         BYTEA   NOT NULL,
    operation    TEXT    NOT NULL,
    size         INTEGER NOT NULL, -- bytes of `operation`, so reads can cut chunks by size without loading it
    PRIMARY KEY (unit_id, idx)
);
CREATE UNIQUE INDEX operations_by_ordinal ON operations (ordinal);

-- One row: the last ordinal given out. A committing transaction adds its operation count with an UPDATE, which holds
-- the row lock until COMMIT: ordinals are therefore handed out in commit order, and a reader that has seen ordinal N
-- has seen every committed ordinal below N (no sequence that commits out of order). Rolled-back transactions give
-- their ordinals back.
CREATE TABLE ordinal_counter (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    last BIGINT  NOT NULL
);
INSERT INTO ordinal_counter (id, last) VALUES (TRUE, 0);

-- The header index, derived from `document` scope operations in the same transaction. `name` is UTF-8 bytes:
-- PostgreSQL text cannot hold NUL, a document name can.
CREATE TABLE documents (
    document_id   TEXT    PRIMARY KEY,
    document_type TEXT    NOT NULL,
    name          BYTEA   NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    deleted       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX documents_by_type ON documents (document_type, document_id);

CREATE TABLE keyframes (
    unit_id    BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    last_hash  BYTEA  NOT NULL,
    state      TEXT   NOT NULL,
    state_hash BYTEA  NOT NULL,
    seen       TEXT   NOT NULL DEFAULT '', -- the unit's seen clocks (causal context) at `revision`: JSON, or empty
    PRIMARY KEY (unit_id, revision)
);

-- A small key-value table: the replica id, sync cursors and outbox marks.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
