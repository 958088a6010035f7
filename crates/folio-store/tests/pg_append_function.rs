//! The group-commit function of migration 0005 against the one of migration 0004 it replaces: the same calls, with
//! random requests (stale, unlinked, unknown links, several requests of one unit in one call, new units, header
//! changes), get the same answers and leave the same tables in two databases, one migrated to 0004 and one to the
//! newest migration. And a store written by 0004's function opens with the newest migrations and goes on.
//!
//! Needs `FOLIO_TEST_DATABASE_URL` (scripts/test starts a cluster).

use futures::TryStreamExt;
use serde_json::json;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use folio_core::{DocumentId, OpHash, Operation, Scope, SyncUnit};
use folio_store::conformance::{Chain, Rng};
use folio_store::pg_testing::{TestDatabase, connect};
use folio_store::{OperationStore, PgStore, verify};

/// A new database with the store's migrations up to `last` applied, as that version left it.
async fn migrated_up_to(last: i64) -> (TestDatabase, PgConnection) {
    let db = TestDatabase::create().await;
    let mut conn = connect(&db.url).await;
    let all = sqlx::migrate!("./migrations/postgres");
    let old = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(all.migrations.iter().filter(|m| m.version <= last).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    old.run_direct(&mut conn).await.expect("migrate");
    (db, conn)
}

/// One call's arguments, in `folio_append`'s order (after `origin` and `channel`).
#[derive(Default, Clone)]
struct Call {
    r_doc: Vec<String>,
    r_scope: Vec<String>,
    r_branch: Vec<String>,
    r_expected: Vec<i64>,
    r_count: Vec<i64>,
    r_prev: Vec<Option<Vec<u8>>>,
    r_links: Vec<bool>,
    r_last_hash: Vec<Vec<u8>>,
    r_last_ts: Vec<i64>,
    o_req: Vec<i32>,
    o_idx: Vec<i64>,
    o_skip: Vec<i64>,
    o_ts: Vec<i64>,
    o_hash: Vec<Vec<u8>>,
    o_json: Vec<String>,
    o_size: Vec<i32>,
    h_req: Vec<i32>,
    h_kind: Vec<String>,
    h_type: Vec<Option<String>>,
    h_name: Vec<Option<Vec<u8>>>,
    h_ts: Vec<i64>,
}

/// The answer: whether a transaction id came back, and the per-request status, revision and head hash.
type Answer = (bool, Vec<Option<i32>>, Vec<Option<i64>>, Vec<Option<Vec<u8>>>);

async fn call(conn: &mut PgConnection, c: &Call) -> (Option<i64>, Answer) {
    let row = sqlx::query(
        "SELECT xid, status, revision, head_hash FROM folio_append(7, 'folio_test_commits', $1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    )
    .bind(&c.r_doc)
    .bind(&c.r_scope)
    .bind(&c.r_branch)
    .bind(&c.r_expected)
    .bind(&c.r_count)
    .bind(&c.r_prev)
    .bind(&c.r_links)
    .bind(&c.r_last_hash)
    .bind(&c.r_last_ts)
    .bind(&c.o_req)
    .bind(&c.o_idx)
    .bind(&c.o_skip)
    .bind(&c.o_ts)
    .bind(&c.o_hash)
    .bind(&c.o_json)
    .bind(&c.o_size)
    .bind(&c.h_req)
    .bind(&c.h_kind)
    .bind(&c.h_type)
    .bind(&c.h_name)
    .bind(&c.h_ts)
    .fetch_one(conn)
    .await
    .expect("folio_append");
    let xid: Option<i64> = row.get(0);
    (xid, (xid.is_some(), row.get(1), row.get(2), row.get(3)))
}

/// The head of `(doc, scope)` on `conn`, `(0, zero hash, 0)` when the unit has no row.
async fn head(conn: &mut PgConnection, doc: &str, scope: &str) -> (i64, Vec<u8>) {
    sqlx::query_as("SELECT revision, last_hash FROM units WHERE document_id = $1 AND scope = $2 AND branch = 'main'")
        .bind(doc)
        .bind(scope)
        .fetch_optional(conn)
        .await
        .expect("head")
        .unwrap_or((0, vec![0; 32]))
}

/// Everything the function writes, with the ordinals' low part only (the transaction ids differ between the two
/// databases) and their high parts replaced by the call's number.
async fn tables(conn: &mut PgConnection) -> (Vec<String>, Vec<String>, Vec<String>) {
    let texts = |sql: &'static str| sqlx::query_scalar::<_, String>(sql);
    let units = texts(
        "SELECT concat_ws(' ', document_id, scope, branch, revision, encode(last_hash, 'hex'), last_ts_ms) \
         FROM units ORDER BY document_id, scope, branch",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("units");
    let operations = texts(
        "SELECT concat_ws(' ', u.document_id, u.scope, o.idx, \
                dense_rank() OVER (ORDER BY o.ordinal >> 20), o.ordinal & 1048575, o.origin, o.skip, \
                o.timestamp_ms, encode(o.hash, 'hex'), o.operation, o.size) \
         FROM operations o JOIN units u USING (unit_id) ORDER BY u.document_id, u.scope, o.idx",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("operations");
    let documents = texts(
        "SELECT concat_ws(' ', document_id, document_type, encode(name, 'hex'), created_at_ms, deleted) \
         FROM documents ORDER BY document_id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("documents");
    (units, operations, documents)
}

/// A random call over a few units, built against the heads of `conn` so that most requests are accepted and the
/// others fail in each of the ways the function tells apart.
async fn random_call(rng: &mut Rng, conn: &mut PgConnection, docs: &[String], ts: &mut i64) -> Call {
    let mut c = Call::default();
    let requests = 1 + rng.below(6);
    // Heads as this call's earlier requests would leave them, so a unit's second request chains on its first.
    let mut ahead: std::collections::HashMap<(String, String), (i64, Vec<u8>)> = Default::default();
    for k in 0..requests {
        let doc = docs[rng.below(docs.len() as u64) as usize].clone();
        let scope = if rng.below(4) == 0 { "local" } else { "global" }.to_owned();
        let key = (doc.clone(), scope.clone());
        let (rev, hash) = match ahead.get(&key) {
            Some(h) => h.clone(),
            None => head(conn, &doc, &scope).await,
        };
        let expected = match rng.below(10) {
            0 => rev + 1,
            1 if rev > 0 => rev - 1,
            _ => rev,
        };
        let count = if rng.below(12) == 0 { 0 } else { 1 + rng.below(3) as i64 };
        let prev = match rng.below(10) {
            0 => None,
            1 => Some(rng.bytes()),
            _ => Some(hash.clone()),
        };
        let last = rng.bytes();
        *ts += rng.below(5) as i64;
        c.r_doc.push(doc.clone());
        c.r_scope.push(scope.clone());
        c.r_branch.push("main".to_owned());
        c.r_expected.push(expected);
        c.r_count.push(count);
        c.r_prev.push(prev);
        c.r_links.push(rng.below(12) != 0);
        c.r_last_hash.push(last.clone());
        c.r_last_ts.push(*ts - rng.below(3) as i64);
        for i in 0..count {
            let json = format!("{{\"id\":\"{}\",\"n\":{}}}", uuid::Uuid::now_v7(), rng.below(1_000_000));
            c.o_req.push(k as i32 + 1);
            c.o_idx.push(expected + i);
            c.o_skip
                .push(if rng.below(8) == 0 { 1 + rng.below(3) as i64 } else { 0 });
            c.o_ts.push(*ts);
            c.o_hash.push(if i + 1 == count { last.clone() } else { rng.bytes() });
            c.o_size.push(json.len() as i32);
            c.o_json.push(json);
        }
        if rng.below(3) == 0 {
            let (kind, ty, name) = match rng.below(3) {
                0 => (
                    "c",
                    Some("todo".to_owned()),
                    Some(format!("doc {}", rng.below(9)).into_bytes()),
                ),
                1 => ("r", None, Some(format!("renamed\0{}", rng.below(9)).into_bytes())),
                _ => ("d", None, None),
            };
            for _ in 0..1 + rng.below(2) {
                c.h_req.push(k as i32 + 1);
                c.h_kind.push(kind.to_owned());
                c.h_type.push(ty.clone());
                c.h_name.push(name.clone());
                c.h_ts.push(*ts);
            }
        }
        ahead.insert(key, (expected + count, last));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_function_answers_and_writes_as_the_old_one() {
    let (_old_db, mut old) = migrated_up_to(4).await;
    let (_new_db, mut new) = migrated_up_to(i64::MAX).await;
    let functions: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE version >= 5")
        .fetch_one(&mut new)
        .await
        .expect("migrations");
    assert!(functions >= 1, "the new database has the newer migrations");
    let docs: Vec<String> = (0..5).map(|_| DocumentId::new().to_string()).collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut ts = 1_000;
    let (mut statuses, mut several, mut last_xid) = ([0usize; 4], 0, (0, 0));
    for n in 0..400 {
        let c = random_call(&mut rng, &mut old, &docs, &mut ts).await;
        let mut units: Vec<_> = c.r_doc.iter().zip(&c.r_scope).collect();
        units.sort();
        units.dedup();
        if units.len() < c.r_doc.len() {
            several += 1;
        }
        let (old_xid, old_answer) = call(&mut old, &c).await;
        let (new_xid, new_answer) = call(&mut new, &c).await;
        assert_eq!(old_answer, new_answer, "call {n}");
        for s in old_answer.1.iter().flatten() {
            statuses[*s as usize] += 1;
        }
        if let (Some(o), Some(x)) = (old_xid, new_xid) {
            assert!(o > last_xid.0 && x > last_xid.1, "transaction ids grow");
            last_xid = (o, x);
        }
    }
    assert!(
        statuses.iter().all(|&s| s >= 20) && several >= 50,
        "every outcome and calls with a unit twice occur often: {statuses:?}, {several}"
    );
    let (old_tables, new_tables) = (tables(&mut old).await, tables(&mut new).await);
    assert!(old_tables.1.len() > 300, "{} operations written", old_tables.1.len());
    assert_eq!(old_tables.0, new_tables.0, "units");
    assert_eq!(old_tables.1, new_tables.1, "operations");
    assert_eq!(old_tables.2, new_tables.2, "documents");
}

/// Appends `ops` (one request at `revision`, over `prev`) through the function as 0004 left it.
async fn append_with_0004(conn: &mut PgConnection, unit: &SyncUnit, revision: u64, prev: OpHash, ops: &[Operation]) {
    let json: Vec<String> = ops.iter().map(|o| serde_json::to_string(o).expect("json")).collect();
    let c = Call {
        r_doc: vec![unit.document_id.to_string()],
        r_scope: vec![unit.scope.as_str().to_owned()],
        r_branch: vec![unit.branch.as_str().to_owned()],
        r_expected: vec![revision as i64],
        r_count: vec![ops.len() as i64],
        r_prev: vec![Some(prev.0.to_vec())],
        r_links: vec![true],
        r_last_hash: vec![ops.last().expect("ops").hash.0.to_vec()],
        r_last_ts: vec![0],
        o_req: vec![1; ops.len()],
        o_idx: ops.iter().map(|o| o.index as i64).collect(),
        o_skip: vec![0; ops.len()],
        o_ts: ops.iter().map(|o| o.timestamp_utc_ms as i64).collect(),
        o_hash: ops.iter().map(|o| o.hash.0.to_vec()).collect(),
        o_size: json.iter().map(|j| j.len() as i32).collect(),
        o_json: json,
        ..Call::default()
    };
    let (_, (written, status, _, _)) = call(conn, &c).await;
    assert!(written && status == [Some(0)], "append refused: {status:?}");
}

/// A store written by the previous version (migrations up to 0004, its function) opens with the newest migrations:
/// its logs read back whole, by action id and by ordinal, verify, and appends go on after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_by_0004_opens_and_goes_on() {
    let (db, mut old) = migrated_up_to(4).await;
    let units: Vec<SyncUnit> = (0..3)
        .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
        .collect();
    let mut chains: Vec<Chain> = units.iter().cloned().map(Chain::new).collect();
    let mut written: Vec<Vec<Operation>> = vec![Vec::new(); units.len()];
    for round in 0..4u64 {
        for (u, unit) in units.iter().enumerate() {
            let (revision, prev) = (chains[u].next, chains[u].prev);
            let ops: Vec<Operation> = (0..2)
                .map(|i| chains[u].op("SET", json!({ "round": round, "i": i })))
                .collect();
            append_with_0004(&mut old, unit, revision, prev, &ops).await;
            written[u].extend(ops);
        }
    }
    drop(old);

    let store = PgStore::open(&db.url).await.expect("open with the newest migrations");
    for (u, unit) in units.iter().enumerate() {
        let read: Vec<Operation> = store.read(unit, 0, None).try_collect().await.expect("read");
        assert_eq!(read, written[u]);
        let found = store
            .find_actions(unit, &[written[u][5].id, written[u][2].id])
            .await
            .expect("find_actions");
        assert_eq!(found, vec![written[u][2].clone(), written[u][5].clone()]);
        let next = chains[u].op("SET", json!({ "after": true }));
        let appended = store
            .append(unit, 8, vec![next.clone()])
            .await
            .expect("append after the migration");
        assert_eq!(appended.revision, 9);
        assert_eq!(store.head(unit).await.expect("head"), (9, next.hash));
    }
    let since = store.read_since(0, 100).await.expect("read_since");
    assert_eq!(since.len(), 3 * 9);
    assert!(since.windows(2).all(|w| w[0].ordinal < w[1].ordinal));
    assert!(verify(&store).await.expect("verify").is_ok());
}
