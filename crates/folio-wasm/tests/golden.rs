//! Golden histories for the browser: logs made by real Rust replicas (reactors on memory stores, synced with
//! folio-sync, with rebases, compressions, skips and actions refused in their merged position) and what folding them
//! gives. `clients/js/test/golden.test.mjs` folds and replays the same file through the WebAssembly build and must
//! get byte-identical operations, documents and state hashes.
//!
//! This test checks the checked-in file natively: folding each log with the replica core gives the recorded
//! document text, and replaying each step (an integration or a compression, as the Rust replica made it) gives the
//! recorded operations. `FOLIO_GOLDEN_WRITE=1 cargo test -p folio-wasm --test golden` makes a new file from a new
//! random run (checked by the same code before it is written).

use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use folio_core::merge::effective;
use folio_core::{Branch, DocumentId, ModelRegistry, Operation, Scope, SyncUnit};
use folio_reactor::{ReactorConfig, Submit};
use folio_store::MemoryStore;
use folio_sync::{Replica, RoundOptions, sync_round};
use folio_wasm::core::{Core, LoadInput, Outcome, SyncEntry};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../clients/js/test/golden/histories.json")
}

/// One document as one replica has it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct History {
    name: String,
    id: DocumentId,
    /// Each operation's wire JSON text (text, so that no JSON parser of the host rewrites a number).
    document_ops: Vec<String>,
    global_ops: Vec<String>,
    local_ops: Vec<String>,
    /// The document's wire JSON as the Rust replica serves it.
    document: String,
    state_hash: String,
    /// The global state's canonical JSON.
    canonical_state: String,
    /// How the global and document logs were made, step by step.
    steps: Vec<ReplayStep>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayStep {
    scope: Scope,
    /// The log's length before the step.
    at: usize,
    /// `integrate` (of `entries`) or `compress` (of `ids`).
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ids: Vec<String>,
    /// How many operations the step appended (the log's `at..at + count`).
    count: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Fixture {
    histories: Vec<History>,
}

fn texts(ops: &[Operation]) -> Vec<String> {
    ops.iter().map(|op| serde_json::to_string(op).unwrap()).collect()
}

fn parse_ops(texts: &[String]) -> Vec<Operation> {
    texts.iter().map(|t| serde_json::from_str(t).unwrap()).collect()
}

fn load_input(id: DocumentId, document: &[Operation], global: &[Operation], local: &[Operation]) -> LoadInput {
    LoadInput {
        id,
        branch: Branch::default(),
        document_ops: document.to_vec(),
        keyframe: None,
        global_ops: global.to_vec(),
        local_ops: local.to_vec(),
    }
}

fn core() -> Core {
    Core::new("golden", Box::new(|| 1), 7)
}

/// Finds how the log of `scope` was made: from each position, a compression (its first operation's action is
/// already effective before it) or an integration of the actions up to the next skip.
fn derive_steps(id: DocumentId, scope: Scope, document: &[Operation], global: &[Operation]) -> Vec<ReplayStep> {
    let log = if scope == Scope::Global { global } else { document };
    let mut steps = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let prefix = &log[..at];
        let before = effective(prefix);
        let op = &log[at];
        let (doc_ops, global_ops) = match scope {
            Scope::Global => (document, prefix),
            _ => (prefix, &[][..]),
        };
        let known = before.iter().any(|b| b.action.id == op.action.id);
        let end = (at + 1..log.len()).find(|&j| log[j].skip > 0).unwrap_or(log.len());
        let entries: Vec<SyncEntry> = log[at..end]
            .iter()
            .map(|op| SyncEntry {
                document_id: id,
                scope,
                branch: Branch::default(),
                action: op.action.clone(),
            })
            .collect();
        let mut candidates = vec![ReplayStep {
            scope,
            at,
            kind: "integrate".into(),
            entries: Some(serde_json::to_string(&entries).unwrap()),
            ids: Vec::new(),
            count: 0,
        }];
        if op.skip > 0 && known {
            // A compression (its actions keep the ids of those it replaces), or an id reused by another client.
            let cut = op.index - op.skip;
            let ids: Vec<String> = before
                .iter()
                .filter(|b| b.index >= cut)
                .map(|b| b.action.id.to_string())
                .collect();
            candidates.push(ReplayStep {
                scope,
                at,
                kind: "compress".into(),
                entries: None,
                ids,
                count: 0,
            });
        }
        let found = candidates.into_iter().find_map(|mut step| {
            let mut core = core();
            core.load(load_input(id, doc_ops, global_ops, &[])).unwrap().unwrap();
            let produced = replay(&mut core, id, &step);
            let fits =
                !produced.is_empty() && texts(&produced) == texts(&log[at..(at + produced.len()).min(log.len())]);
            step.count = produced.len();
            fits.then_some(step)
        });
        let Some(step) = found else {
            panic!("{scope} at {at}: the replica core does not make what the Rust replica made");
        };
        let produced = step.count;
        at += produced;
        steps.push(step);
    }
    steps
}

fn replay(core: &mut Core, id: DocumentId, step: &ReplayStep) -> Vec<Operation> {
    match step.kind.as_str() {
        "integrate" => {
            let entries: Vec<SyncEntry> = serde_json::from_str(step.entries.as_deref().unwrap()).unwrap();
            match core.integrate(entries).unwrap() {
                Outcome::Done(done) => done.appended.into_iter().flat_map(|a| a.operations).collect(),
                Outcome::Need { need } => panic!("needs {need:?} with every operation loaded"),
            }
        }
        _ => {
            let ids = step.ids.iter().map(|i| i.parse().unwrap()).collect();
            match core.compress(id, &Branch::default(), ids).unwrap() {
                Outcome::Done(done) => done.appended.into_iter().flat_map(|a| a.operations).collect(),
                Outcome::Need { need } => panic!("needs {need:?} with every operation loaded"),
            }
        }
    }
}

fn check(fixture: &Fixture) {
    let mut rebases = 0;
    let mut rejected = 0;
    let mut compressions = 0;
    let mut reused = 0;
    for h in &fixture.histories {
        let (document, global, local) = (
            parse_ops(&h.document_ops),
            parse_ops(&h.global_ops),
            parse_ops(&h.local_ops),
        );
        let folded = folio_wasm::core::fold_logs(load_input(h.id, &document, &global, &local))
            .unwrap()
            .unwrap();
        assert_eq!(folded, h.document, "{}: the fold differs", h.name);
        let wire: Value = serde_json::from_str(&folded).unwrap();
        assert_eq!(wire["stateHash"], json!(h.state_hash), "{}", h.name);
        let canonical = String::from_utf8(folio_core::hash::canonical_json(&wire["state"]["global"])).unwrap();
        assert_eq!(canonical, h.canonical_state, "{}", h.name);
        for step in &h.steps {
            let mut core = core();
            let (doc_ops, global_ops, log) = match step.scope {
                Scope::Global => (&document[..], &global[..step.at], &global),
                _ => (&document[..step.at], &[][..], &document),
            };
            core.load(load_input(h.id, doc_ops, global_ops, &[])).unwrap().unwrap();
            let produced = replay(&mut core, h.id, step);
            assert_eq!(
                texts(&produced),
                texts(&log[step.at..step.at + step.count]),
                "{}: {} step at {}",
                h.name,
                step.scope,
                step.at
            );
            compressions += usize::from(step.kind == "compress");
        }
        rebases += global.iter().chain(&document).filter(|op| op.skip > 0).count();
        rejected += global.iter().filter(|op| op.error.is_some()).count();
        reused += global
            .iter()
            .filter(|op| {
                op.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("DUPLICATE_ACTION_ID"))
            })
            .count();
    }
    assert!(
        rebases > 0 && rejected > 0 && compressions > 0 && reused > 0,
        "{rebases} skips, {rejected} refused ({reused} for a reused id), {compressions} compressions"
    );
}

#[test]
fn golden_histories_fold_and_replay_the_same() {
    let path = fixture();
    if std::env::var_os("FOLIO_GOLDEN_WRITE").is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let fixture = rt.block_on(generate());
        check(&fixture);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&fixture).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (FOLIO_GOLDEN_WRITE=1 makes it)", path.display()));
    check(&serde_json::from_str(&text).unwrap());
}

/// xorshift64*, so a run is varied without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

async fn open_on(store: MemoryStore) -> Replica {
    open_with(store, 4).await
}

async fn open_with(store: MemoryStore, keyframe_every: u64) -> Replica {
    let config = ReactorConfig {
        executors: 1,
        keyframe_every,
        ..ReactorConfig::default()
    };
    Replica::open(Arc::new(store), Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .unwrap()
}

async fn act(r: &Replica, doc: DocumentId, action_type: &str, input: Value, scope: Scope) {
    let action = r.reactor().action(action_type, input, scope);
    // A refusal here (a title left empty, an update of a missing item) is part of the game: nothing is stored.
    let _ = r.reactor().apply(Submit::new(doc, vec![action])).await;
}

async fn round(a: &Replica, b: &Replica, compress: bool) {
    let options = RoundOptions {
        compress,
        push_entries: 5,
        pull_entries: 4,
        integrate_entries: 6,
        ..RoundOptions::default()
    };
    sync_round(a, b, &options).await.unwrap();
}

async fn generate() -> Fixture {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let stores = [MemoryStore::new(), MemoryStore::new(), MemoryStore::new()];
    let [a, b, s] = [
        open_on(stores[0].clone()).await,
        open_on(stores[1].clone()).await,
        open_on(stores[2].clone()).await,
    ];
    let todo = s
        .reactor()
        .create_document("folio/todo-list", "Golden todos", None)
        .await
        .unwrap()
        .header
        .id;
    let jdoc = s
        .reactor()
        .create_document("folio/json", "Golden json", None)
        .await
        .unwrap()
        .header
        .id;
    act(&s, jdoc, "SET", json!({"path": "/list", "value": ["x"]}), Scope::Global).await;
    act(
        &s,
        todo,
        "ADD_TODO",
        json!({"id": "a", "title": "first"}),
        Scope::Global,
    )
    .await;
    round(&a, &s, false).await;
    round(&b, &s, false).await;
    // Concurrent removals of the same element: the second in the total order is refused where it is merged.
    act(&a, jdoc, "REMOVE", json!({"path": "/list", "index": 0}), Scope::Global).await;
    act(&b, jdoc, "REMOVE", json!({"path": "/list", "index": 0}), Scope::Global).await;
    // A run never sent that compresses to nothing (add then delete), and one that compresses to one add.
    act(
        &a,
        todo,
        "ADD_TODO",
        json!({"id": "tmp", "title": "gone soon"}),
        Scope::Global,
    )
    .await;
    act(&a, todo, "DELETE_TODO", json!({"id": "tmp"}), Scope::Global).await;
    round(&a, &s, true).await;
    act(
        &b,
        todo,
        "ADD_TODO",
        json!({"id": "b", "title": "draft"}),
        Scope::Global,
    )
    .await;
    act(
        &b,
        todo,
        "UPDATE_TODO",
        json!({"id": "b", "title": "final", "done": true}),
        Scope::Global,
    )
    .await;
    round(&b, &s, true).await;
    round(&a, &s, false).await;
    // A client that reuses an action id with other content: the later one in the total order is kept, refused
    // (DUPLICATE_ACTION_ID), on every replica.
    let original = a
        .reactor()
        .action("ADD_TODO", json!({"id": "dup", "title": "first"}), Scope::Global);
    a.reactor()
        .apply(Submit::new(todo, vec![original.clone()]))
        .await
        .unwrap();
    round(&a, &s, false).await;
    let mut reused = original;
    reused.input = json!({"id": "dup", "title": "second"});
    reused.replica = Some("0000000000000bad".into());
    reused.timestamp_utc_ms += 1;
    s.integrate(vec![folio_sync::SyncEntry {
        document_id: todo,
        scope: Scope::Global,
        branch: Branch::default(),
        action: reused,
    }])
    .await
    .unwrap();
    let docs = [todo, jdoc];
    let replicas = [&a, &b, &s];
    let values = [
        json!(1.0),
        json!(0.1),
        json!(1e300),
        json!(-2.5e-7),
        json!("text"),
        json!({"z": 1, "a": [true, null]}),
        json!(12345678901234567u64),
    ];
    for _ in 0..60 {
        let r = *rng.pick(&replicas);
        match rng.next() % 10 {
            0..=6 => {
                let doc = *rng.pick(&docs);
                let id = *rng.pick(&["a", "b", "c"]);
                let (t, input) = if doc == todo {
                    match rng.next() % 4 {
                        0 => ("ADD_TODO", json!({"id": id, "title": rng.pick(&["one", "two", ""])})),
                        1 => ("UPDATE_TODO", json!({"id": id, "done": rng.next().is_multiple_of(2)})),
                        2 => ("DELETE_TODO", json!({"id": id})),
                        _ => ("CLEAR_DONE", json!({})),
                    }
                } else {
                    let value = rng.pick(&values).clone();
                    match rng.next() % 5 {
                        0 => ("SET", json!({"path": format!("/{id}"), "value": value})),
                        1 => ("INSERT", json!({"path": "/list", "index": 0, "value": value})),
                        2 => ("REMOVE", json!({"path": "/list", "index": 0})),
                        3 => ("MERGE", json!({"path": "/m", "value": {id: value}})),
                        _ => ("DELETE", json!({"path": format!("/{id}")})),
                    }
                };
                act(r, doc, t, input, Scope::Global).await;
            }
            7 => {
                let doc = *rng.pick(&docs);
                act(
                    r,
                    doc,
                    "SET",
                    json!({"path": "/draft", "value": rng.pick(&values).clone()}),
                    Scope::Local,
                )
                .await;
                act(
                    r,
                    doc,
                    "SET_NAME",
                    json!({"name": format!("name {}", rng.next() % 100)}),
                    Scope::Document,
                )
                .await;
            }
            _ => {
                let other = if std::ptr::eq(r, &s) { *rng.pick(&[&a, &b]) } else { &s };
                round(r, other, rng.next().is_multiple_of(2)).await;
            }
        }
    }
    for _ in 0..2 {
        round(&a, &s, true).await;
        round(&b, &s, true).await;
    }
    let mut histories = Vec::new();
    for (name, store) in ["a", "b", "s"].into_iter().zip(stores) {
        // A fresh replica on the store, without keyframes, rehydrates from the start of the log: the header's
        // lastModifiedAtUtcIso is not a function of the log alone (a cached document keeps the time of an operation
        // a later rebase cut; a fold from a keyframe leaves out the operations before it), the state is.
        let r = &open_with(store, 0).await;
        for doc in docs {
            let read = |scope| {
                let unit = SyncUnit::main(doc, scope);
                r.reactor().store().read(&unit, 0, None).try_collect::<Vec<Operation>>()
            };
            let (document, global, local) = (
                read(Scope::Document).await.unwrap(),
                read(Scope::Global).await.unwrap(),
                read(Scope::Local).await.unwrap(),
            );
            let served = r.reactor().get(doc, &Branch::default()).await.unwrap().unwrap();
            let wire: Value = serde_json::from_str(&served.to_json_string()).unwrap();
            histories.push(History {
                name: format!("replica {name}, {}", served.header.document_type),
                id: doc,
                steps: [Scope::Document, Scope::Global]
                    .into_iter()
                    .flat_map(|scope| derive_steps(doc, scope, &document, &global))
                    .collect(),
                document_ops: texts(&document),
                global_ops: texts(&global),
                local_ops: texts(&local),
                document: served.to_json_string().to_string(),
                state_hash: served.state_hash().to_hex(),
                canonical_state: String::from_utf8(folio_core::hash::canonical_json(&wire["state"]["global"])).unwrap(),
            });
        }
    }
    for doc in docs {
        let hashes: Vec<String> = histories
            .iter()
            .filter(|h| h.id == doc)
            .map(|h| h.state_hash.clone())
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "replicas did not converge: {hashes:?}"
        );
    }
    Fixture { histories }
}

/// The browser's core refuses a pulled action whose signature does not verify, as folio-sync's replicas do: left
/// out, listed as `BAD_SIGNATURE`, while the valid ones of the same answer are integrated.
#[test]
fn the_core_refuses_pulled_actions_whose_signature_does_not_verify() {
    let id = DocumentId::new();
    let create = folio_core::Action::new(
        "CREATE_DOCUMENT",
        serde_json::json!({"documentType": "folio/todo-list", "name": "signed"}),
        Scope::Document,
        folio_core::HlcTimestamp::new(10, 0),
    );
    let create = Operation::new(create, 0, 0, None, &folio_core::OpHash::ZERO);
    let mut core = core();
    core.load(load_input(id, std::slice::from_ref(&create), &[], &[]))
        .unwrap()
        .unwrap();
    let key = folio_core::ReplicaKey::from_seed(&[5; 32]);
    let add = |item: &str, ms: u64| {
        let mut a = folio_core::Action::new(
            "ADD_TODO",
            serde_json::json!({"id": item, "title": item}),
            Scope::Global,
            folio_core::HlcTimestamp::new(ms, 0),
        );
        key.sign(&mut a);
        a
    };
    let good = add("good", 20);
    let mut tampered = add("bad", 21);
    tampered.input = serde_json::json!({"id": "bad", "title": "changed"});
    let entry = |action: folio_core::Action| SyncEntry {
        document_id: id,
        scope: Scope::Global,
        branch: Branch::default(),
        action,
    };
    let done = match core
        .integrate(vec![entry(good.clone()), entry(tampered.clone())])
        .unwrap()
    {
        Outcome::Done(done) => done,
        Outcome::Need { need } => panic!("needs {need:?}"),
    };
    assert_eq!(done.new, 1);
    assert_eq!(done.rejected.len(), 1);
    assert_eq!(done.rejected[0].action_id, tampered.id);
    assert!(
        done.rejected[0].reason.starts_with("BAD_SIGNATURE: "),
        "{}",
        done.rejected[0].reason
    );
    let ops: Vec<Operation> = done.appended.into_iter().flat_map(|a| a.operations).collect();
    assert_eq!(ops.iter().map(|o| o.id).collect::<Vec<_>>(), vec![good.id]);
    // What the host signs with WebCrypto: one message for each group of up to 32 of its own actions (a batch
    // signature), then the core puts the signature and each action's proof in the entries.
    let bare = |item: &str, ms: u64| {
        let mut a = add(item, ms);
        a.signer = None;
        a.signature = None;
        a
    };
    let own: Vec<folio_core::Action> = (0..3).map(|i| bare(&format!("own-{i}"), 30 + i)).collect();
    let own_text = serde_json::to_string(&own.iter().cloned().map(entry).collect::<Vec<_>>()).unwrap();
    let mut expected = own.clone();
    key.sign_all(expected.iter_mut());
    let plan = folio_wasm::signing_batch(&own_text);
    let count = u32::from_le_bytes(plan[0..4].try_into().unwrap());
    let len = u32::from_le_bytes(plan[4..8].try_into().unwrap()) as usize;
    assert_eq!((count, plan.len()), (3, 8 + len), "one group of three");
    let refs: Vec<&folio_core::Action> = own.iter().collect();
    assert_eq!(&plan[8..], folio_core::signature::batch_plan(&refs)[0].message());
    // The host's signature of that message (Ed25519 is deterministic: the one `sign_all` made).
    let signature = folio_core::signature::host_check(&expected[0])
        .unwrap()
        .signature
        .to_vec();
    let signed = folio_wasm::signed_entries(&own_text, key.public(), &signature);
    let back: Vec<folio_core::Action> = signed
        .lines()
        .map(|l| serde_json::from_str::<SyncEntry>(l).unwrap().action)
        .collect();
    assert_eq!(back, expected);
    assert!(back.iter().all(|a| folio_core::signature::verify(a) == Ok(true)));
    // `signed_entries` checks the form of the host's own signatures (the curve equation is the receivers' to
    // check): a count of signatures that does not match the messages, or a key that does not derive the entries'
    // replica id, is refused.
    let refused = folio_wasm::signed_entries(&own_text, key.public(), &signature[..63]);
    assert!(
        refused.starts_with("{\"error\"") && refused.contains("INVALID_REQUEST"),
        "{refused}"
    );
    let other = folio_core::ReplicaKey::from_seed(&[6; 32]);
    let refused = folio_wasm::signed_entries(&own_text, other.public(), &signature);
    assert!(refused.contains("BAD_SIGNATURE"), "{refused}");
    assert_eq!(folio_wasm::replica_id_of(&[0; 31]), "");
    assert!(folio_wasm::signing_batch("not json").is_empty());

    // The host's verification (WebCrypto in a browser): `signature_checks` gives each distinct check once (the
    // three actions of the batch share one), with the entries it decides; `integrate_checked` takes the verdicts.
    let unsigned = folio_core::Action::new(
        "ADD_TODO",
        serde_json::json!({"id": "plain", "title": "plain"}),
        Scope::Global,
        folio_core::HlcTimestamp::new(22, 0),
    );
    let list = vec![entry(good.clone()), entry(unsigned.clone()), entry(tampered.clone())];
    let checks = |list: &[SyncEntry]| {
        let parts = folio_wasm::signature_checks(&serde_json::to_string(list).unwrap());
        let mut records = Vec::new();
        let mut at = 0;
        let u32_at = |at: usize| u32::from_le_bytes(parts[at..at + 4].try_into().unwrap());
        while at < parts.len() {
            let count = u32_at(at) as usize;
            let indexes: Vec<u32> = (0..count).map(|k| u32_at(at + 4 + 4 * k)).collect();
            at += 4 + 4 * count;
            let len = u32_at(at + 96) as usize;
            records.push((
                indexes,
                parts[at..at + 32].to_vec(),
                parts[at + 100..at + 100 + len].to_vec(),
            ));
            at += 100 + len;
        }
        records
    };
    let public = folio_core::signature::host_check(&good).unwrap().key.to_vec();
    assert_eq!(
        checks(&list),
        vec![
            (vec![0], public.clone(), folio_core::signature::signing_bytes(&good)),
            (vec![2], public.clone(), folio_core::signature::signing_bytes(&tampered)),
        ]
    );
    let mut with_batch = list.clone();
    with_batch.extend(expected.iter().cloned().map(entry));
    let batch_message = folio_core::signature::host_check(&expected[0]).unwrap().message;
    assert_eq!(batch_message, plan[8..]);
    assert_eq!(checks(&with_batch)[2], (vec![3, 4, 5], public, batch_message));
    let integrate_with = |verdicts: &[Option<bool>]| {
        let mut fresh = self::core();
        fresh
            .load(load_input(id, std::slice::from_ref(&create), &[], &[]))
            .unwrap()
            .unwrap();
        match fresh.integrate_checked(list.clone(), verdicts).unwrap() {
            Outcome::Done(done) => {
                let mut refused: Vec<_> = done.rejected.iter().map(|r| r.action_id).collect();
                refused.sort();
                (done.new, refused)
            }
            Outcome::Need { need } => panic!("needs {need:?}"),
        }
    };
    // Honest verdicts, or none: the core's own answers.
    assert_eq!(integrate_with(&[Some(true), None, Some(false)]), (2, vec![tampered.id]));
    assert_eq!(integrate_with(&[]), (2, vec![tampered.id]));
    // A verdict is the host's where it stands (here: a well-formed signature by a sound key).
    let mut both = vec![good.id, tampered.id];
    both.sort();
    assert_eq!(integrate_with(&[Some(false), None, Some(false)]), (1, both));
}
