//! Loro: the map workload sets keys of a root map `root`; the todo workload keeps a root map `items` of child map
//! containers `{title, done}`.

use std::path::{Path, PathBuf};

use loro::{Container, ExportMode, LoroDoc, LoroMap, LoroValue, ValueOrContainer};

use crate::{Engine, Result, Summary, Update, Workload, WorkloadKind, blob_path, write_blob};

/// The fixed peer id, so runs are identical.
const PEER_ID: u64 = 1;

/// Loro, one commit per update (Loro itself merges consecutive commits of one peer into larger changes).
pub struct LoroEngine {
    kind: WorkloadKind,
    dir: PathBuf,
    doc: LoroDoc,
}

impl LoroEngine {
    /// Loro for `kind`, saving into `dir`.
    pub fn new(kind: WorkloadKind, dir: &Path) -> Self {
        Self {
            kind,
            dir: dir.to_owned(),
            doc: LoroDoc::new(),
        }
    }

    fn root(&self) -> LoroMap {
        self.doc.get_map(match self.kind {
            WorkloadKind::Map => "root",
            WorkloadKind::Todo => "items",
        })
    }
}

fn item(items: &LoroMap, id: &str) -> Result<LoroMap> {
    match items.get(id) {
        Some(ValueOrContainer::Container(Container::Map(map))) => Ok(map),
        _ => Err(format!("no item {id}").into()),
    }
}

impl Engine for LoroEngine {
    fn build(&mut self, workload: &Workload) -> Result<()> {
        self.doc.set_peer_id(PEER_ID)?;
        let root = self.root();
        for update in &workload.updates {
            match update {
                Update::Set { key, value } => root.insert(key, *value)?,
                Update::Add { id, title } => {
                    let item = root.insert_container(id, LoroMap::new())?;
                    item.insert("title", title.as_str())?;
                    item.insert("done", false)?;
                }
                Update::Retitle { id, title } => item(&root, id)?.insert("title", title.as_str())?,
                Update::SetDone { id, done } => item(&root, id)?.insert("done", *done)?,
                Update::Delete { id } => root.delete(id)?,
            }
            self.doc.commit();
        }
        Ok(())
    }

    fn save(&mut self) -> Result<u64> {
        write_blob(&self.dir, &self.doc.export(ExportMode::Snapshot)?)
    }

    fn load(&mut self) -> Result<()> {
        let bytes = std::fs::read(blob_path(&self.dir))?;
        self.doc = LoroDoc::from_snapshot(&bytes)?;
        Ok(())
    }

    fn read_all(&self) -> Result<Summary> {
        let LoroValue::Map(root) = self.root().get_deep_value() else {
            return Err("the root is not a map".into());
        };
        let mut summary = Summary::default();
        for (key, value) in root.iter() {
            match (self.kind, value) {
                (WorkloadKind::Map, LoroValue::I64(v)) => summary.add_map_entry(key, *v),
                (WorkloadKind::Todo, LoroValue::Map(item)) => {
                    let (Some(LoroValue::String(title)), Some(LoroValue::Bool(done))) =
                        (item.get("title"), item.get("done"))
                    else {
                        return Err(format!("item {key} lacks a title or done flag").into());
                    };
                    summary.add_todo_item(key, title, *done);
                }
                _ => return Err(format!("unexpected value at {key}").into()),
            }
        }
        Ok(summary)
    }
}
