-- The group commit of migration 0004 with less work on the server per call: the same signature, the same answers
-- and the same invariants (see 0004's comments and ARCHITECTURE.md, "No commit is missed").
--
-- * When every unit of the call has one request (the usual case: one executor a document, so one append a document
--   in a group commit), one UPDATE checks every request against its unit's head and moves the heads of those that
--   pass, returning them: no per-request loop, no separate check and head statements.
-- * The rest (requests that did not pass, units with no head row yet, units with several requests in the call)
--   go through 0004's request-by-request loop, which tells the answers apart; new units get their head row there,
--   not on every call as in 0004.
CREATE OR REPLACE FUNCTION folio_append(
    origin bigint, channel text,
    r_doc text[], r_scope text[], r_branch text[], r_expected bigint[], r_count bigint[], r_prev bytea[],
    r_links boolean[], r_last_hash bytea[], r_last_ts bigint[],
    o_req int[], o_idx bigint[], o_skip bigint[], o_ts bigint[], o_hash bytea[], o_json text[], o_size int[],
    h_req int[], h_kind text[], h_type text[], h_name bytea[], h_ts bigint[],
    OUT xid bigint, OUT status int[], OUT revision bigint[], OUT head_hash bytea[])
LANGUAGE plpgsql AS $fn$
DECLARE
    n int := cardinality(r_doc);
    keys int;
    moved int := 0;
    moved_k bigint[] := '{}';
    moved_unit bigint[];
    moved_rev bigint[];
    req_unit bigint[];
    r record;
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
    IF n = 0 THEN
        status := '{}'; revision := '{}'; head_hash := '{}';
        RETURN;
    END IF;

    -- The units' locks first, before anything is written: the transaction gets its id (the ordinals' high part)
    -- at its first write, so of two transactions appending to one unit, the second, which waits for the first
    -- one's COMMIT, gets the higher id (see 0004). Counted: as many locks as requests means one request a unit (a
    -- hash collision only sends the call to the loop below).
    SELECT count(*) INTO keys
    FROM (SELECT pg_advisory_xact_lock(k)
          FROM (SELECT DISTINCT hashtextextended(t.d || '/' || t.s || '/' || t.b, 0) AS k
                FROM unnest(r_doc, r_scope, r_branch) AS t(d, s, b) ORDER BY 1 OFFSET 0) AS keys) AS locked;

    -- One request a unit: the requests whose unit is at the expected revision with the hash the first operation
    -- chains over move its head, in one statement (its snapshot is taken after the locks: it sees every head as the
    -- last writer of the unit committed it).
    IF keys = n THEN
        WITH m AS (
            UPDATE units u SET revision = u.revision + t.c, last_hash = t.lh, last_ts_ms = greatest(u.last_ts_ms, t.lt)
            FROM unnest(r_doc, r_scope, r_branch, r_expected, r_count, r_prev, r_links, r_last_hash, r_last_ts)
                   WITH ORDINALITY AS t(d, s, b, e, c, p, l, lh, lt, k)
            WHERE u.document_id = t.d AND u.scope = t.s AND u.branch = t.b
              AND u.revision = t.e AND t.c <> 0 AND u.last_hash = t.p AND t.l
            RETURNING t.k, u.unit_id, u.revision)
        SELECT count(*), coalesce(array_agg(m.k ORDER BY m.k), '{}'), array_agg(m.unit_id ORDER BY m.k),
               array_agg(m.revision ORDER BY m.k)
        INTO moved, moved_k, moved_unit, moved_rev
        FROM m;
    END IF;
    IF moved = n THEN
        req_unit := moved_unit;
        revision := moved_rev;
        status := array_fill(0, ARRAY[n]);
        head_hash := array_fill(NULL::bytea, ARRAY[n]);
        any_accepted := true;
    ELSE
        status := array_fill(NULL::int, ARRAY[n]);
        revision := array_fill(NULL::bigint, ARRAY[n]);
        head_hash := array_fill(NULL::bytea, ARRAY[n]);
        req_unit := array_fill(NULL::bigint, ARRAY[n]);
        FOR i IN 1 .. moved LOOP
            req_unit[moved_k[i]] := moved_unit[i];
            status[moved_k[i]] := 0;
            revision[moved_k[i]] := moved_rev[i];
            any_accepted := true;
        END LOOP;

        -- The other requests: new units get a head row at revision 0, then the checks unit by unit, each unit's
        -- requests in request order, each after the ones accepted before it.
        INSERT INTO units (document_id, scope, branch, revision, last_hash, last_ts_ms)
        SELECT DISTINCT t.d, t.s, t.b, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0
        FROM unnest(r_doc, r_scope, r_branch) WITH ORDINALITY AS t(d, s, b, k)
        WHERE t.k <> ALL (moved_k)
          AND NOT EXISTS (SELECT 1 FROM units u WHERE u.document_id = t.d AND u.scope = t.s AND u.branch = t.b)
        ON CONFLICT (document_id, scope, branch) DO NOTHING;
        FOR r IN
            SELECT t.k, u.unit_id, u.revision AS head_rev, u.last_hash, u.last_ts_ms, t.e, t.c, t.p, t.l, t.lh, t.lt
            FROM unnest(r_doc, r_scope, r_branch, r_expected, r_count, r_prev, r_links, r_last_hash, r_last_ts)
                   WITH ORDINALITY AS t(d, s, b, e, c, p, l, lh, lt, k)
            JOIN units u ON u.document_id = t.d AND u.scope = t.s AND u.branch = t.b
            WHERE t.k <> ALL (moved_k)
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
        IF cardinality(hu) > 0 THEN
            UPDATE units SET revision = y.r, last_hash = y.h, last_ts_ms = y.t
            FROM unnest(hu, hr, hh, ht) AS y(u, r, h, t)
            WHERE units.unit_id = y.u;
        END IF;
    END IF;
    IF NOT any_accepted THEN
        RETURN;
    END IF;

    -- The transaction id is the one the first write above took, after the locks.
    xid := pg_current_xact_id()::text::bigint;
    INSERT INTO operations (unit_id, idx, ordinal, origin, skip, timestamp_ms, hash, operation, size)
    SELECT req_unit[x.r], x.i, (xid << 20) + x.pos, origin, x.s, x.t, x.h, x.j, x.z
    FROM unnest(o_req, o_idx, o_skip, o_ts, o_hash, o_json, o_size) WITH ORDINALITY AS x(r, i, s, t, h, j, z, pos)
    WHERE req_unit[x.r] IS NOT NULL;

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
