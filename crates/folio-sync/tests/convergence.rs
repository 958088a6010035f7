//! Randomised schedules: 3 to 5 replicas act on shared documents and sync in random pairs, with duplicated
//! deliveries, partitions and restarts, clients that retry an action after a lost reply (on the same replica or on
//! another one) and clients that reuse an action's id for another action; after healing, every replica has the same
//! state hash, a history `verify` accepts, and every acknowledged action (or its compressed form, at its author's
//! choice). The documents are todo lists and `folio/json` documents edited with non-commutative `INSERT`/`REMOVE`,
//! where one action applied twice shows in the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::TryStreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

use folio_core::merge::effective;
use folio_core::{Branch, DocumentId, ModelRegistry, OpHash, Scope, SyncUnit};
use folio_reactor::{ReactorConfig, Submit};
use folio_store::{MemoryStore, OperationStore, verify};
use folio_sync::{
    Filter, PullRequest, PullResponse, PushRequest, PushResponse, Remote, RemoteInfo, Replica, RoundOptions, SyncError,
    sync_round,
};

#[derive(Debug, Clone)]
enum Step {
    /// Replica acts on a document.
    Act {
        replica: usize,
        doc: usize,
        action: (String, Value),
    },
    /// A client retries an acknowledged action (the same id and content) on a replica, after a lost reply.
    Retry { replica: usize, pick: usize },
    /// A client submits another action under an acknowledged action's id.
    Reuse {
        replica: usize,
        pick: usize,
        action: (String, Value),
    },
    /// Replica renames a document (document scope).
    Rename { replica: usize, doc: usize, name: String },
    /// `from` syncs with `to` (push then pull), compressing its outbox or not.
    Sync { from: usize, to: usize, compress: bool },
    /// A delivery made earlier arrives again.
    Duplicate { pick: usize },
    /// The replicas split in two groups (by bit) that cannot reach each other, until `Heal`.
    Partition { mask: u8 },
    /// The network heals.
    Heal,
    /// A replica's process restarts on its store.
    Restart { replica: usize },
}

fn todo_action() -> impl Strategy<Value = (String, Value)> {
    let id = prop::sample::select(vec!["a", "b", "c", "d"]);
    let title = prop::sample::select(vec!["one", "two", "three", ""]);
    prop_oneof![
        4 => (id.clone(), title.clone()).prop_map(|(id, t)| ("ADD_TODO".to_owned(), json!({"id": id, "title": t}))),
        3 => (id.clone(), prop::option::of(title), prop::option::of(any::<bool>())).prop_map(|(id, t, d)| {
            let mut input = json!({"id": id});
            if let Some(t) = t { input["title"] = json!(t); }
            if let Some(d) = d { input["done"] = json!(d); }
            ("UPDATE_TODO".to_owned(), input)
        }),
        2 => id.prop_map(|id| ("DELETE_TODO".to_owned(), json!({"id": id}))),
        1 => Just(("CLEAR_DONE".to_owned(), json!({}))),
    ]
}

/// `folio/json` actions on a list: inserting and removing do not commute, so an action applied twice shows.
fn json_action() -> impl Strategy<Value = (String, Value)> {
    prop_oneof![
        4 => (0..3usize, 0..100u32)
            .prop_map(|(index, v)| ("INSERT".to_owned(), json!({"path": "/list", "index": index, "value": v}))),
        2 => (0..3usize).prop_map(|index| ("REMOVE".to_owned(), json!({"path": "/list", "index": index}))),
        1 => (0..100u32).prop_map(|v| ("SET".to_owned(), json!({"path": "/last", "value": v}))),
    ]
}

/// Documents 0 and 1 are todo lists, 2 and 3 `folio/json` documents.
fn act(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..n, 0..2usize, todo_action()).prop_map(|(replica, doc, action)| Step::Act { replica, doc, action }),
        (0..n, 2..4usize, json_action()).prop_map(|(replica, doc, action)| Step::Act { replica, doc, action }),
    ]
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => act(n),
        2 => (0..n, any::<usize>()).prop_map(|(replica, pick)| Step::Retry { replica, pick }),
        1 => (0..n, any::<usize>(), prop_oneof![todo_action(), json_action()])
            .prop_map(|(replica, pick, action)| Step::Reuse { replica, pick, action }),
        1 => (0..n, 0..2usize, prop::sample::select(vec!["x", "y", "z"]))
            .prop_map(|(replica, doc, name)| Step::Rename { replica, doc, name: name.to_owned() }),
        6 => (0..n, 0..n, any::<bool>()).prop_map(|(from, to, compress)| Step::Sync { from, to, compress }),
        2 => any::<usize>().prop_map(|pick| Step::Duplicate { pick }),
        1 => any::<u8>().prop_map(|mask| Step::Partition { mask }),
        1 => Just(Step::Heal),
        1 => (0..n).prop_map(|replica| Step::Restart { replica }),
    ]
}

/// A delivery that can be made again.
#[derive(Clone)]
enum Delivery {
    Push { to: usize, request: PushRequest },
    Pull { to: usize, response: PullResponse },
}

/// A replica as a remote, recording what it is sent and what it answers.
struct Recorded {
    index: usize,
    inner: Replica,
    puller: usize,
    log: Arc<Mutex<Vec<Delivery>>>,
}

#[async_trait]
impl Remote for Recorded {
    async fn info(&self) -> Result<RemoteInfo, SyncError> {
        Remote::info(&self.inner).await
    }
    async fn push(&self, request: &PushRequest) -> Result<PushResponse, SyncError> {
        self.log.lock().unwrap().push(Delivery::Push {
            to: self.index,
            request: request.clone(),
        });
        Remote::push(&self.inner, request).await
    }
    async fn pull(&self, request: &PullRequest) -> Result<PullResponse, SyncError> {
        let response = Remote::pull(&self.inner, request).await?;
        self.log.lock().unwrap().push(Delivery::Pull {
            to: self.puller,
            response: response.clone(),
        });
        Ok(response)
    }
}

struct World {
    stores: Vec<MemoryStore>,
    replicas: Vec<Replica>,
    docs: Vec<DocumentId>,
    /// Acknowledged actions: (author, document, id).
    acked: Vec<(usize, DocumentId, Uuid)>,
    /// Acknowledged global actions as their clients submitted them, for retries: (author, document, action).
    submitted: Vec<(usize, DocumentId, folio_core::Action)>,
    compressed_by: BTreeSet<usize>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    partition: Option<u8>,
}

async fn open(store: &MemoryStore) -> Replica {
    let config = ReactorConfig {
        executors: 2,
        ..ReactorConfig::default()
    };
    Replica::open(Arc::new(store.clone()), Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .expect("open replica")
}

impl World {
    async fn new(n: usize) -> Self {
        let stores: Vec<MemoryStore> = (0..n).map(|_| MemoryStore::new()).collect();
        let mut replicas = Vec::new();
        for s in &stores {
            replicas.push(open(s).await);
        }
        let mut docs = Vec::new();
        for (document_type, name) in [
            ("folio/todo-list", "left"),
            ("folio/todo-list", "right"),
            ("folio/json", "list"),
            ("folio/json", "other list"),
        ] {
            let doc = replicas[0]
                .reactor()
                .create_document(document_type, name, None)
                .await
                .expect("create");
            docs.push(doc.header.id);
        }
        let mut world = Self {
            stores,
            replicas,
            docs,
            acked: Vec::new(),
            submitted: Vec::new(),
            compressed_by: BTreeSet::new(),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            partition: None,
        };
        // Everyone learns of the documents made on replica 0.
        for i in 1..n {
            world.sync(i, 0, false).await;
        }
        world
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        match self.partition {
            Some(mask) => (mask >> a) & 1 == (mask >> b) & 1,
            None => true,
        }
    }

    async fn sync(&mut self, from: usize, to: usize, compress: bool) {
        if from == to || !self.reachable(from, to) {
            return;
        }
        let remote = Recorded {
            index: to,
            inner: self.replicas[to].clone(),
            puller: from,
            log: self.deliveries.clone(),
        };
        let options = RoundOptions {
            compress,
            push_entries: 7,
            pull_entries: 5,
            integrate_entries: 9,
            filter: Filter::default(),
            progress: None,
        };
        let report = sync_round(&self.replicas[from], &remote, &options)
            .await
            .expect("sync round");
        if report.compressed > 0 {
            self.compressed_by.insert(from);
        }
    }

    async fn run(&mut self, step: Step) {
        match step {
            Step::Act { replica, doc, action } => {
                let r = &self.replicas[replica];
                let (action_type, input) = action;
                // As a client sends it over HTTP: an id, a type, an input; the replica stamps its author and clock.
                let mut action = r.reactor().action(action_type, input, Scope::Global);
                action.replica = None;
                let id = action.id;
                let doc = self.docs[doc];
                if let Ok(outcome) = r.reactor().apply(Submit::new(doc, vec![action.clone()])).await {
                    assert_eq!(outcome.operations.len(), 1);
                    self.acked.push((replica, doc, id));
                    self.submitted.push((replica, doc, action));
                }
            }
            Step::Retry { replica, pick } => {
                if self.submitted.is_empty() {
                    return;
                }
                let (_, doc, action) = self.submitted[pick % self.submitted.len()].clone();
                let r = &self.replicas[replica];
                let unit = SyncUnit::main(doc, Scope::Global);
                let known = r
                    .reactor()
                    .store()
                    .find_actions(&unit, &[action.id])
                    .await
                    .expect("find");
                let before = r.reactor().store().head(&unit).await.expect("head").0;
                let outcome = r.reactor().apply(Submit::new(doc, vec![action.clone()])).await;
                let after = r.reactor().store().head(&unit).await.expect("head").0;
                // The latest occurrence (a rebase re-appends an action) is what the replica answers with.
                match known.last() {
                    // The replica has it with the same content: the original outcome, nothing appended.
                    Some(original)
                        if original.action.input == action.input
                            && original.action.action_type == action.action_type =>
                    {
                        let outcome = outcome.expect("a retry is answered");
                        assert_eq!(outcome.operations.len(), 1);
                        assert_eq!(outcome.operations[0].action.id, action.id);
                        assert_eq!(outcome.operations[0].index, original.index, "the original operation");
                        assert_eq!(before, after, "a retry appends nothing");
                    }
                    // Compressed by its author into another action under the same id.
                    Some(_) => {
                        assert!(outcome.is_err(), "another action under the id is refused");
                        assert_eq!(before, after);
                    }
                    // A replica that never saw it takes it as new (a client retrying on another node); when the
                    // original arrives, the first of the two in the total order is kept.
                    None => {
                        if outcome.is_err() {
                            assert_eq!(before, after, "a refused action appends nothing");
                        }
                    }
                }
            }
            Step::Reuse { replica, pick, action } => {
                if self.submitted.is_empty() {
                    return;
                }
                let (_, doc, original) = self.submitted[pick % self.submitted.len()].clone();
                let r = &self.replicas[replica];
                let mut reused = r.reactor().action(action.0, action.1, Scope::Global);
                reused.replica = None;
                reused.id = original.id;
                let unit = SyncUnit::main(doc, Scope::Global);
                // What this replica holds under the id: the original, and whatever else arrived under it since (a
                // reuse elsewhere that sync brought here, recorded as a refused duplicate). The latest decides.
                let found = r
                    .reactor()
                    .store()
                    .find_actions(&unit, &[original.id])
                    .await
                    .expect("find");
                let before = r.reactor().store().head(&unit).await.expect("head").0;
                let outcome = r.reactor().apply(Submit::new(doc, vec![reused.clone()])).await;
                let after = r.reactor().store().head(&unit).await.expect("head").0;
                match found.last() {
                    // The replica holds this very action under the id: a retry, answered with that operation.
                    Some(latest)
                        if latest.action.action_type == reused.action_type && latest.action.input == reused.input =>
                    {
                        let outcome = outcome.expect("a retry is answered");
                        assert_eq!(outcome.operations.len(), 1);
                        assert_eq!(outcome.operations[0].index, latest.index, "the operation it holds");
                        assert_eq!(before, after, "a retry appends nothing");
                    }
                    Some(_) => {
                        assert!(
                            matches!(outcome, Err(folio_reactor::ReactorError::DuplicateActionId { .. })),
                            "a reused id is refused: {outcome:?}"
                        );
                        assert_eq!(before, after, "nothing appended");
                    }
                    None => {}
                }
            }
            Step::Rename { replica, doc, name } => {
                let doc = self.docs[doc];
                let r = &self.replicas[replica];
                let outcome = r.reactor().set_name(doc, &name).await.expect("rename");
                self.acked.push((replica, doc, outcome.operations[0].action.id));
            }
            Step::Sync { from, to, compress } => self.sync(from, to, compress).await,
            Step::Duplicate { pick } => {
                let delivery = {
                    let log = self.deliveries.lock().unwrap();
                    if log.is_empty() {
                        return;
                    }
                    log[pick % log.len()].clone()
                };
                match delivery {
                    Delivery::Push { to, request } => {
                        self.replicas[to]
                            .integrate(request.entries)
                            .await
                            .expect("duplicate push");
                    }
                    Delivery::Pull { to, response } => {
                        self.replicas[to]
                            .integrate(response.entries)
                            .await
                            .expect("duplicate pull");
                    }
                }
            }
            Step::Partition { mask } => self.partition = Some(mask),
            Step::Heal => self.partition = None,
            Step::Restart { replica } => {
                self.replicas[replica].reactor().shutdown().await;
                self.replicas[replica] = open(&self.stores[replica]).await;
            }
        }
    }

    async fn heal_and_settle(&mut self) {
        self.partition = None;
        let n = self.replicas.len();
        for _ in 0..3 {
            for a in 0..n {
                for b in 0..n {
                    self.sync(a, b, false).await;
                }
            }
        }
    }
}

/// The ids of a unit's effective history.
async fn effective_ids(store: &dyn OperationStore, unit: &SyncUnit) -> BTreeSet<Uuid> {
    let ops: Vec<folio_core::Operation> = store.read(unit, 0, None).try_collect().await.expect("read");
    effective(&ops).iter().map(|op| op.action.id).collect()
}

async fn check(world: &World) {
    let n = world.replicas.len();
    for &doc in &world.docs {
        let mut hashes = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, r) in world.replicas.iter().enumerate() {
            r.reactor()
                .view()
                .invalidate(&folio_reactor::DocKey::new(doc, Branch::default()));
            let d = r
                .reactor()
                .get(doc, &Branch::default())
                .await
                .expect("get")
                .expect("document exists");
            hashes.insert(i, d.state_hash());
            names.insert(d.header.name.clone());
            // A fresh rehydration from the log agrees with the executor's working state.
            let cold = r
                .reactor()
                .view()
                .hydrate(&folio_reactor::DocKey::new(doc, Branch::default()), None)
                .await
                .expect("hydrate")
                .expect("exists");
            assert_eq!(cold.state_hash(), d.state_hash(), "replica {i}: cold and cached agree");
        }
        let distinct: BTreeSet<OpHash> = hashes.values().copied().collect();
        assert_eq!(distinct.len(), 1, "document {doc}: state hashes differ: {hashes:?}");
        assert_eq!(names.len(), 1, "document {doc}: names differ: {names:?}");
    }
    for (i, s) in world.stores.iter().enumerate() {
        let report = verify(s).await.expect("verify");
        assert!(report.is_ok(), "replica {i}: verify: {:?}", report.broken);
    }
    // Every acknowledged action is in every replica's effective history, or (compressed by its author before it
    // was ever sent) in none.
    for &(author, doc, id) in &world.acked {
        let mut present = Vec::new();
        for s in &world.stores {
            let global = effective_ids(s, &SyncUnit::main(doc, Scope::Global)).await;
            let document = effective_ids(s, &SyncUnit::main(doc, Scope::Document)).await;
            present.push(global.contains(&id) || document.contains(&id));
        }
        let everywhere = present.iter().all(|p| *p);
        let nowhere = present.iter().all(|p| !*p);
        if !(everywhere || nowhere) {
            for (i, s) in world.stores.iter().enumerate() {
                let ops: Vec<folio_core::Operation> = s
                    .read(&SyncUnit::main(doc, Scope::Global), 0, None)
                    .try_collect()
                    .await
                    .unwrap();
                eprintln!("replica {i} ({}):", world.replicas[i].id());
                for op in ops {
                    eprintln!(
                        "  {} skip {} {} {} {}.{}@{:?} err {:?}",
                        op.index,
                        op.skip,
                        op.action.id,
                        op.action.action_type,
                        op.action.timestamp_utc_ms,
                        op.action.counter,
                        op.action.replica,
                        op.error
                    );
                }
            }
        }
        assert!(
            everywhere || nowhere,
            "action {id} of replica {author} is on some replicas only: {present:?}"
        );
        if nowhere {
            assert!(
                world.compressed_by.contains(&author),
                "action {id} of replica {author} is lost without a compression"
            );
        }
    }
    let _ = n;
}

fn schedule() -> impl Strategy<Value = (usize, Vec<Step>)> {
    (3usize..=5).prop_flat_map(|n| (Just(n), prop::collection::vec(step(n), 5..60)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge((n, steps) in schedule()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut world = World::new(n).await;
            for s in steps {
                world.run(s).await;
            }
            world.heal_and_settle().await;
            check(&world).await;
            for r in &world.replicas {
                r.reactor().shutdown().await;
            }
        });
    }
}
