//! folio: the reactor over a SQLite store, with the built-in models (`folio/json` for the map workload,
//! `folio/todo-list` for the todo workload).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};

use folio::core::models::json::JsonState;
use folio::core::models::todo::TodoState;
use folio::reactor::{COLD_READ_LIMIT, DocKey, JobHandle};
use folio::{
    Branch, Document, DocumentId, DocumentView, ModelRegistry, OperationStore, Reactor, ReactorConfig, Scope,
    SqliteStore, Submit,
};

use crate::{Engine, Result, Summary, Update, Workload, WorkloadKind};

/// Jobs in flight during a build: below the reactor's per-executor queue (10,000 / 8 executors), so a submit is
/// never `Overloaded`, and above its group-commit batch (1,024 jobs).
const WINDOW: usize = 1_100;

/// folio on SQLite. `keyframe_every` is used both by the reactor that builds and by the view that loads.
pub struct Folio {
    kind: WorkloadKind,
    dir: PathBuf,
    keyframe_every: u64,
    runtime: tokio::runtime::Runtime,
    /// The store written by `build`, until `save` checkpoints and closes it.
    store: Option<SqliteStore>,
    /// The document after `build` or `load`.
    doc: Option<Arc<Document>>,
    /// The view a load read through, kept open as an application keeps its store: closing the store (its
    /// connection's thread, SQLite's checkpoint and removal of the WAL files) is not part of a load.
    loaded: Option<DocumentView>,
    /// `(open, hydrate)` milliseconds of the last load.
    last_load: (f64, f64),
}

impl Folio {
    /// folio for `kind`, persisting in `dir`, with keyframes every `keyframe_every` global operations (0: none).
    pub fn new(kind: WorkloadKind, dir: &Path, keyframe_every: u64) -> Result<Self> {
        Ok(Self {
            kind,
            dir: dir.to_owned(),
            keyframe_every,
            runtime: tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
            store: None,
            doc: None,
            loaded: None,
            last_load: (0.0, 0.0),
        })
    }

    fn db_path(&self) -> PathBuf {
        self.dir.join("folio.db")
    }

    fn id_path(&self) -> PathBuf {
        self.dir.join("folio.id")
    }

    fn before_keyframe_path(&self) -> PathBuf {
        self.dir.join("folio.before-keyframe")
    }

    /// The revision just before the newest keyframe, written by `build` when keyframes are on: the costliest load
    /// of a keyframed document, whose newest keyframe is a whole interval (or a group commit) behind.
    pub fn before_keyframe(&self) -> Result<Option<(u64, u64)>> {
        let Ok(text) = std::fs::read_to_string(self.before_keyframe_path()) else {
            return Ok(None);
        };
        let (revision, tail) = text.trim().split_once(' ').ok_or("bad before-keyframe file")?;
        Ok(Some((revision.parse()?, tail.parse()?)))
    }

    /// Loads the document as it was just before its newest keyframe (`DocumentView::get_at`, the same rehydration
    /// as a load with a target revision): the nearest keyframe is then the previous one, and the tail is as long as
    /// it gets. Returns the revision and the tail's length.
    pub fn load_before_keyframe(&mut self) -> Result<(u64, u64)> {
        let (revision, tail) = self.before_keyframe()?.ok_or("no keyframes in this build")?;
        let id: DocumentId = std::fs::read_to_string(self.id_path())?.trim().parse()?;
        let path = self.db_path();
        let keyframe_every = self.keyframe_every;
        let (doc, view) = self.runtime.block_on(async move {
            let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open_read_only(&path).await?);
            let view = DocumentView::new(store, Self::registry(), 1 << 30, keyframe_every);
            let doc = view
                .get_at(&DocKey::new(id, Branch::default()), revision)
                .await?
                .ok_or("document not found")?;
            Ok::<_, crate::Error>((doc, view))
        })?;
        if doc.header.revision.global != revision {
            return Err("the load stopped short of the revision".into());
        }
        self.doc = Some(Arc::new(doc));
        self.loaded = Some(view);
        Ok((revision, tail))
    }

    fn document_type(&self) -> &'static str {
        match self.kind {
            WorkloadKind::Map => "folio/json",
            WorkloadKind::Todo => "folio/todo-list",
        }
    }

    fn registry() -> Arc<ModelRegistry> {
        Arc::new(ModelRegistry::with_builtin())
    }

    /// Rehydrates like `DocumentView::hydrate` does at the heads, step by step through the public store API, and
    /// times each step: where a load's time goes. Run it in a fresh process, as a load. Names end in their unit
    /// (`_ms`, `_kib`, `_ops`).
    pub fn explain(&mut self) -> Result<Vec<(&'static str, f64)>> {
        let id: DocumentId = std::fs::read_to_string(self.id_path())?.trim().parse()?;
        let path = self.db_path();
        let keyframe_every = self.keyframe_every;
        self.runtime.block_on(async move {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let mut steps = Vec::new();
            let start = Instant::now();
            let store = SqliteStore::open_read_only(&path).await?;
            steps.push(("open_ms", ms(start.elapsed())));
            let registry = ModelRegistry::with_builtin();
            let key = DocKey::new(id, Branch::default());
            let mut doc = Document::empty(id, Branch::default());

            // The heads, the keyframe (its state unpacked), the skips and each scope's first operations (decoded).
            let start = Instant::now();
            let cold = store
                .read_cold(id, &key.branch, keyframe_every > 0, COLD_READ_LIMIT)
                .await?;
            steps.push(("cold_read_ms", ms(start.elapsed())));
            steps.push((
                "cold_read_ops",
                (cold.document.len() + cold.global.len() + cold.local.len()) as f64,
            ));

            let start = Instant::now();
            for op in &cold.document {
                doc.apply(op, &registry)?;
            }
            steps.push(("document_scope_ms", ms(start.elapsed())));
            let start = Instant::now();
            let mut from = 0;
            if let Some(keyframe) = &cold.keyframe {
                let model = doc.model().cloned().ok_or("document has no model")?;
                let state = model.state_from_json(&keyframe.state)?;
                doc.restore_global(state, keyframe.revision, keyframe.last_hash, keyframe.seen.clone());
                steps.push(("keyframe_kib", keyframe.state.len() as f64 / 1024.0));
                from = keyframe.revision;
            }
            steps.push(("keyframe_parse_ms", ms(start.elapsed())));

            let start = Instant::now();
            for op in &cold.global {
                doc.apply(op, &registry)?;
            }
            steps.push(("fold_ms", ms(start.elapsed())));

            // A tail longer than the cold read's share is streamed.
            let global = key.unit(Scope::Global);
            let next = cold.global.last().map_or(from, |op| op.index + 1);
            let start = Instant::now();
            let mut fold = Duration::ZERO;
            let mut tail = 0u64;
            if next < cold.heads.global {
                let mut ops = store.read(&global, next, Some(cold.heads.global));
                while let Some(op) = ops.next().await {
                    let op = op?;
                    let applying = Instant::now();
                    doc.apply(&op, &registry)?;
                    fold += applying.elapsed();
                    tail += 1;
                }
            }
            steps.push(("streamed_ops", tail as f64));
            steps.push(("streamed_read_decode_ms", ms(start.elapsed() - fold)));
            steps.push(("streamed_fold_ms", ms(fold)));

            // The local scope after the global one, as `hydrate` folds them.
            let start = Instant::now();
            for op in &cold.local {
                doc.apply(op, &registry)?;
            }
            steps.push(("local_scope_ms", ms(start.elapsed())));
            if doc.header.revision.global != cold.heads.global {
                return Err(crate::Error::from(
                    "the step-by-step rehydration did not reach the head",
                ));
            }
            Ok(steps)
        })
    }
}

/// The folio action (`type`, `input`) of an update.
fn action_of(update: &Update) -> (&'static str, Value) {
    match update {
        Update::Set { key, value } => ("SET", json!({ "path": format!("/{key}"), "value": value })),
        Update::Add { id, title } => ("ADD_TODO", json!({ "id": id, "title": title })),
        Update::Retitle { id, title } => ("UPDATE_TODO", json!({ "id": id, "title": title })),
        Update::SetDone { id, done } => ("UPDATE_TODO", json!({ "id": id, "done": done })),
        Update::Delete { id } => ("DELETE_TODO", json!({ "id": id })),
    }
}

/// `(revision, tail)`: the revision just before the newest keyframe, and how many operations a load at that revision
/// folds on top of the keyframe before it. `None` without keyframes.
async fn before_last_keyframe(store: &SqliteStore, id: DocumentId) -> Result<Option<(u64, u64)>> {
    let global = DocKey::new(id, Branch::default()).unit(Scope::Global);
    let (head, _) = store.head(&global).await?;
    let Some(newest) = store.nearest_keyframe(&global, head).await? else {
        return Ok(None);
    };
    let revision = newest.revision.saturating_sub(1);
    let previous = store
        .nearest_keyframe(&global, revision)
        .await?
        .map_or(0, |k| k.revision);
    Ok(Some((revision, revision - previous)))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

impl Engine for Folio {
    /// One job of one action per update, up to [`WINDOW`] jobs in flight; returns once the reactor has shut down,
    /// so every operation is committed (fsynced) and the view's keyframes are stored.
    fn build(&mut self, workload: &Workload) -> Result<()> {
        let path = self.db_path();
        let config = ReactorConfig {
            keyframe_every: self.keyframe_every,
            ..ReactorConfig::default()
        };
        let document_type = self.document_type();
        let (store, id, doc, before_keyframe) = self.runtime.block_on(async move {
            let store = SqliteStore::open(&path).await?;
            let reactor = Reactor::new(Arc::new(store.clone()), Self::registry(), config);
            let id = reactor.create_document(document_type, "bench", None).await?.header.id;
            let mut in_flight: VecDeque<JobHandle> = VecDeque::with_capacity(WINDOW);
            for update in &workload.updates {
                if in_flight.len() == WINDOW
                    && let Some(oldest) = in_flight.pop_front()
                {
                    oldest.wait().await?;
                }
                let (action_type, input) = action_of(update);
                let action = reactor.action(action_type, input, Scope::Global);
                in_flight.push_back(reactor.submit(Submit::new(id, vec![action]))?);
            }
            for handle in in_flight {
                handle.wait().await?;
            }
            let doc = reactor.get(id, &Branch::default()).await?.ok_or("document vanished")?;
            reactor.shutdown().await;
            let before_keyframe = before_last_keyframe(&store, id).await?;
            Ok::<_, crate::Error>((store, id, doc, before_keyframe))
        })?;
        std::fs::write(self.id_path(), id.to_string())?;
        if let Some((revision, tail)) = before_keyframe {
            std::fs::write(self.before_keyframe_path(), format!("{revision} {tail}"))?;
        }
        self.store = Some(store);
        self.doc = Some(doc);
        Ok(())
    }

    /// Closes the store (its read pool and its writer), then checkpoints the WAL into the database file
    /// (`wal_checkpoint(TRUNCATE)`) on a connection of its own, retried while another connection is still closing.
    /// The size is the database file plus whatever is left in the WAL (nothing).
    fn save(&mut self) -> Result<u64> {
        let store = self.store.take().ok_or("nothing built")?;
        let db = self.db_path();
        self.runtime.block_on(async {
            store.pool().close().await;
            drop(store);
            let options = SqliteConnectOptions::new()
                .filename(&db)
                .journal_mode(SqliteJournalMode::Wal);
            let mut conn = SqliteConnection::connect_with(&options).await?;
            let mut attempts = 0;
            loop {
                let (busy, _log, _checkpointed): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
                    .fetch_one(&mut conn)
                    .await?;
                if busy == 0 {
                    break;
                }
                attempts += 1;
                if attempts == 500 {
                    return Err(crate::Error::from("the WAL checkpoint stayed blocked for 5 s"));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            conn.close().await?;
            Ok::<_, crate::Error>(())
        })?;
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        Ok(file_len(&db) + file_len(&wal))
    }

    /// Opens the SQLite file and rehydrates the document through a new `DocumentView` (nothing cached).
    fn load(&mut self) -> Result<()> {
        let id: DocumentId = std::fs::read_to_string(self.id_path())?.trim().parse()?;
        let path = self.db_path();
        let keyframe_every = self.keyframe_every;
        let (doc, view, open, hydrate) = self.runtime.block_on(async move {
            let start = Instant::now();
            let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open_read_only(&path).await?);
            let opened = start.elapsed();
            let view = DocumentView::new(store, Self::registry(), 1 << 30, keyframe_every);
            let doc = view
                .hydrate(&DocKey::new(id, Branch::default()), None)
                .await?
                .ok_or("document not found")?;
            Ok::<_, crate::Error>((doc, view, opened, start.elapsed() - opened))
        })?;
        self.last_load = (open.as_secs_f64() * 1e3, hydrate.as_secs_f64() * 1e3);
        self.doc = Some(Arc::new(doc));
        self.loaded = Some(view);
        Ok(())
    }

    fn read_all(&self) -> Result<Summary> {
        let doc = self.doc.as_ref().ok_or("nothing built or loaded")?;
        let mut summary = Summary::default();
        match self.kind {
            WorkloadKind::Map => {
                let state = doc.state.downcast_ref::<JsonState>().ok_or("not a folio/json state")?;
                let object = state.0.as_object().ok_or("the state is not an object")?;
                for (key, value) in object {
                    summary.add_map_entry(key, value.as_i64().ok_or("a value is not an integer")?);
                }
            }
            WorkloadKind::Todo => {
                let state = doc
                    .state
                    .downcast_ref::<TodoState>()
                    .ok_or("not a folio/todo-list state")?;
                for (id, item) in &state.items {
                    summary.add_todo_item(id, &item.title, item.done);
                }
            }
        }
        Ok(summary)
    }

    fn load_details(&self) -> Vec<(&'static str, f64)> {
        vec![("open_ms", self.last_load.0), ("hydrate_ms", self.last_load.1)]
    }
}
