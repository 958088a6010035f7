-- A group commit in one round trip, and ordinals that hold no lock to COMMIT.
--
-- Ordinals: an operation's ordinal is (its transaction's id << 20) + its position in the group commit. Transaction
-- ids (xid8, 64 bits, never wrapping) are handed out when a transaction first writes, without any lock held to
-- COMMIT, so group commits of every node overlap entirely. A reader takes only ordinals below
-- `pg_snapshot_xmin(pg_current_snapshot()) << 20`: every transaction with an id below the snapshot's xmin has
-- finished (committed and visible, or rolled back), and every transaction still running or yet to write has an id at
-- or above it, so no operation below that bound can appear later. A reader that saw ordinal N never misses one below
-- N (see ARCHITECTURE.md, "No commit is missed"). The function takes its transaction id only after it holds its
-- units' locks, so a transaction that began after another committed, and in particular the next writer of the same
-- unit, has higher ordinals.
--
-- The old counter's ordinals are far below any new ordinal (a transaction id < 2^20 operations per transaction
-- would be needed to overtake it); the check makes sure.
DO $$
BEGIN
    IF (SELECT last FROM ordinal_counter) >= (pg_current_xact_id()::text::bigint << 20) THEN
        RAISE EXCEPTION 'folio: ordinal_counter is ahead of transaction-id ordinals; cannot migrate';
    END IF;
END
$$;
DROP TABLE ordinal_counter;

-- One group commit: locks its units (in one order for every writer, so two cannot deadlock), checks each request against its unit's head (requests of one unit in request order, each after the ones accepted
-- before it), inserts the accepted requests' operations with their ordinals, moves the heads, updates the header
-- index and queues the commit notice. Called as one statement outside any explicit transaction: the implicit
-- transaction commits when it returns, so a group commit is one round trip.
--
-- Requests (1-based, in request order): unit, expected revision, operation count, `r_prev` (the hash the first
-- operation chains over, when the writer knows it: NULL otherwise), `r_links` (whether the first operation chains
-- over `r_prev`: the writer checks with blake3, which PostgreSQL has not), the last operation's hash and the
-- largest timestamp. Operations: their request's number and their columns, in request order. Header changes: their
-- request's number, kind ('c' created, 'r' renamed, 'd' deleted), type, name, timestamp, in order.
--
-- Per request, `status`: 0 accepted (`revision`: the new head), 1 stale (`revision`, `head_hash`: the head found;
-- the writer tells a replay from a mismatch), 2 the first operation does not chain over the head, 3 the head is at
-- the expected revision but the writer did not know its hash (`head_hash`): nothing written, the writer checks the
-- link and sends the request again. `xid` is the transaction's id (the ordinals' high part; NULL when nothing was
-- written).
CREATE FUNCTION folio_append(
    origin bigint, channel text,
    r_doc text[], r_scope text[], r_branch text[], r_expected bigint[], r_count bigint[], r_prev bytea[],
    r_links boolean[], r_last_hash bytea[], r_last_ts bigint[],
    o_req int[], o_idx bigint[], o_skip bigint[], o_ts bigint[], o_hash bytea[], o_json text[], o_size int[],
    h_req int[], h_kind text[], h_type text[], h_name bytea[], h_ts bigint[],
    OUT xid bigint, OUT status int[], OUT revision bigint[], OUT head_hash bytea[])
LANGUAGE plpgsql AS $fn$
DECLARE
    n int := cardinality(r_doc);
    r record;
    req_unit bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    cur_unit bigint;
    cur_rev bigint;
    cur_hash bytea;
    cur_ts bigint;
    touched boolean := false;
    any_accepted boolean := false;
    hu bigint[] := '{}';
    hr bigint[] := '{}';
    hh bytea[] := '{}';
    ht bigint[] := '{}';
BEGIN
    status := array_fill(NULL::int, ARRAY[n]);
    revision := array_fill(NULL::bigint, ARRAY[n]);
    head_hash := array_fill(NULL::bytea, ARRAY[n]);

    -- The units' locks first, before anything is written: a transaction gets its id (the ordinals' high part) at
    -- its first write, so taking it after the locks means that of two transactions appending to one unit, the
    -- second, which waits for the first one's COMMIT, gets the higher id: a unit's ordinals grow with its indexes.
    -- Advisory locks (by a hash of the unit's key, in one order for every writer so two cannot deadlock; a
    -- collision only makes two units share a lock) take no transaction id; row locks (FOR UPDATE) would.
    PERFORM pg_advisory_xact_lock(k)
    FROM (SELECT DISTINCT hashtextextended(t.d || '/' || t.s || '/' || t.b, 0) AS k
          FROM unnest(r_doc, r_scope, r_branch) AS t(d, s, b) ORDER BY 1 OFFSET 0) AS keys;

    -- New units get a head row at revision 0.
    INSERT INTO units (document_id, scope, branch, revision, last_hash, last_ts_ms)
    SELECT DISTINCT t.d, t.s, t.b, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0
    FROM unnest(r_doc, r_scope, r_branch) AS t(d, s, b)
    WHERE NOT EXISTS (SELECT 1 FROM units u WHERE u.document_id = t.d AND u.scope = t.s AND u.branch = t.b)
    ON CONFLICT (document_id, scope, branch) DO NOTHING;

    -- The checks, unit by unit, each unit's requests in request order (this statement's snapshot is taken after
    -- the locks: it sees every head as the last writer of the unit committed it).
    FOR r IN
        SELECT t.k, u.unit_id, u.revision AS head_rev, u.last_hash, u.last_ts_ms, t.e, t.c, t.p, t.l, t.lh, t.lt
        FROM unnest(r_doc, r_scope, r_branch, r_expected, r_count, r_prev, r_links, r_last_hash, r_last_ts)
               WITH ORDINALITY AS t(d, s, b, e, c, p, l, lh, lt, k)
        JOIN units u ON u.document_id = t.d AND u.scope = t.s AND u.branch = t.b
        ORDER BY u.unit_id, t.k
    LOOP
        IF r.unit_id IS DISTINCT FROM cur_unit THEN
            IF touched THEN
                hu := hu || cur_unit; hr := hr || cur_rev; hh := hh || cur_hash; ht := ht || cur_ts;
            END IF;
            cur_unit := r.unit_id; cur_rev := r.head_rev; cur_hash := r.last_hash; cur_ts := r.last_ts_ms;
            touched := false;
        END IF;
        IF r.e <> cur_rev THEN
            status[r.k] := 1; revision[r.k] := cur_rev; head_hash[r.k] := cur_hash;
        ELSIF r.c = 0 THEN
            status[r.k] := 0; revision[r.k] := cur_rev;
        ELSIF r.p IS NULL THEN
            status[r.k] := 3; revision[r.k] := cur_rev; head_hash[r.k] := cur_hash;
        ELSIF r.p <> cur_hash OR NOT r.l THEN
            status[r.k] := 2; revision[r.k] := cur_rev; head_hash[r.k] := cur_hash;
        ELSE
            req_unit[r.k] := cur_unit;
            cur_rev := cur_rev + r.c; cur_hash := r.lh; cur_ts := greatest(cur_ts, r.lt);
            touched := true; any_accepted := true;
            status[r.k] := 0; revision[r.k] := cur_rev;
        END IF;
    END LOOP;
    IF touched THEN
        hu := hu || cur_unit; hr := hr || cur_rev; hh := hh || cur_hash; ht := ht || cur_ts;
    END IF;
    IF NOT any_accepted THEN
        RETURN;
    END IF;

    xid := pg_current_xact_id()::text::bigint;
    INSERT INTO operations (unit_id, idx, ordinal, origin, skip, timestamp_ms, hash, operation, size)
    SELECT req_unit[x.r], x.i, (xid << 20) + x.pos, origin, x.s, x.t, x.h, x.j, x.z
    FROM unnest(o_req, o_idx, o_skip, o_ts, o_hash, o_json, o_size) WITH ORDINALITY AS x(r, i, s, t, h, j, z, pos)
    WHERE req_unit[x.r] IS NOT NULL;
    UPDATE units SET revision = y.r, last_hash = y.h, last_ts_ms = y.t
    FROM unnest(hu, hr, hh, ht) AS y(u, r, h, t)
    WHERE units.unit_id = y.u;

    IF cardinality(h_req) > 0 THEN
        INSERT INTO documents (document_id, document_type, name, created_at_ms)
        SELECT r_doc[h.r], h.ty, h.nm, h.ts
        FROM unnest(h_req, h_kind, h_type, h_name, h_ts) WITH ORDINALITY AS h(r, k, ty, nm, ts, pos)
        WHERE h.k = 'c' AND req_unit[h.r] IS NOT NULL
        ORDER BY h.pos
        ON CONFLICT (document_id) DO NOTHING;
        UPDATE documents d SET name = x.nm
        FROM (SELECT DISTINCT ON (r_doc[h.r]) r_doc[h.r] AS doc, h.nm
              FROM unnest(h_req, h_kind, h_name) WITH ORDINALITY AS h(r, k, nm, pos)
              WHERE h.k = 'r' AND req_unit[h.r] IS NOT NULL
              ORDER BY r_doc[h.r], h.pos DESC) AS x
        WHERE d.document_id = x.doc;
        UPDATE documents SET deleted = TRUE
        WHERE document_id IN (SELECT r_doc[h.r] FROM unnest(h_req, h_kind) AS h(r, k)
                              WHERE h.k = 'd' AND req_unit[h.r] IS NOT NULL);
    END IF;

    PERFORM pg_notify(channel, origin::text);
END
$fn$;
