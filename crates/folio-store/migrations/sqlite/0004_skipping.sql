-- The skipping operations of each unit (a rebase's first operation), so readers find the cuts of a unit's effective
-- history without reading its log. Covering: `skip` is in the index.
CREATE INDEX IF NOT EXISTS operations_skipping ON operations (unit_id, idx, skip) WHERE skip > 0;
