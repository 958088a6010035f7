//! yrs: the map workload sets keys of a root map `root`; the todo workload keeps a root map `items` of nested item
//! maps `{title, done}`.

use std::path::{Path, PathBuf};

use yrs::updates::decoder::Decode;
use yrs::{Any, Doc, In, Map, MapPrelim, MapRef, Out, ReadTxn, StateVector, Transact, Update as YUpdate};

use crate::{Engine, Result, Summary, Update, Workload, WorkloadKind, blob_path, write_blob};

/// The fixed client id, so runs are identical.
const CLIENT_ID: u64 = 1;

/// yrs, one transaction per update.
pub struct YrsEngine {
    kind: WorkloadKind,
    dir: PathBuf,
    doc: Doc,
}

impl YrsEngine {
    /// yrs for `kind`, saving into `dir`.
    pub fn new(kind: WorkloadKind, dir: &Path) -> Self {
        Self {
            kind,
            dir: dir.to_owned(),
            doc: Doc::with_client_id(CLIENT_ID),
        }
    }

    fn root(&self) -> MapRef {
        self.doc.get_or_insert_map(match self.kind {
            WorkloadKind::Map => "root",
            WorkloadKind::Todo => "items",
        })
    }
}

fn item<T: ReadTxn>(items: &MapRef, txn: &T, id: &str) -> Result<MapRef> {
    match items.get(txn, id) {
        Some(Out::YMap(map)) => Ok(map),
        _ => Err(format!("no item {id}").into()),
    }
}

impl Engine for YrsEngine {
    fn build(&mut self, workload: &Workload) -> Result<()> {
        let root = self.root();
        for update in &workload.updates {
            let mut txn = self.doc.transact_mut();
            match update {
                Update::Set { key, value } => {
                    root.insert(&mut txn, key.as_str(), *value);
                }
                Update::Add { id, title } => {
                    let item = MapPrelim::from([("title", In::from(title.as_str())), ("done", In::from(false))]);
                    root.insert(&mut txn, id.as_str(), item);
                }
                Update::Retitle { id, title } => {
                    item(&root, &txn, id)?.insert(&mut txn, "title", title.as_str());
                }
                Update::SetDone { id, done } => {
                    item(&root, &txn, id)?.insert(&mut txn, "done", *done);
                }
                Update::Delete { id } => {
                    root.remove(&mut txn, id);
                }
            }
        }
        Ok(())
    }

    fn save(&mut self) -> Result<u64> {
        let bytes = self.doc.transact().encode_state_as_update_v1(&StateVector::default());
        write_blob(&self.dir, &bytes)
    }

    fn load(&mut self) -> Result<()> {
        let bytes = std::fs::read(blob_path(&self.dir))?;
        let doc = Doc::with_client_id(CLIENT_ID + 1);
        doc.transact_mut().apply_update(YUpdate::decode_v1(&bytes)?)?;
        self.doc = doc;
        Ok(())
    }

    fn read_all(&self) -> Result<Summary> {
        let root = self.root();
        let txn = self.doc.transact();
        let mut summary = Summary::default();
        for (key, value) in root.iter(&txn) {
            match (self.kind, value) {
                (WorkloadKind::Map, Out::Any(Any::Number(n))) => {
                    summary.add_map_entry(key, n.as_i64().ok_or("a value is not an integer")?);
                }
                (WorkloadKind::Todo, Out::YMap(item)) => {
                    let Some(Out::Any(Any::String(title))) = item.get(&txn, "title") else {
                        return Err(format!("item {key} has no title").into());
                    };
                    let Some(Out::Any(Any::Bool(done))) = item.get(&txn, "done") else {
                        return Err(format!("item {key} has no done flag").into());
                    };
                    summary.add_todo_item(key, &title, done);
                }
                _ => return Err(format!("unexpected value at {key}").into()),
            }
        }
        Ok(summary)
    }
}
