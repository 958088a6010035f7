//! Automerge: the map workload sets keys of the root map; the todo workload keeps a root map `items` of item maps
//! `{title, done}`.

use std::path::{Path, PathBuf};

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValueRef, ValueRef};

use crate::{Engine, Result, Summary, Update, Workload, WorkloadKind, blob_path, write_blob};

/// Automerge, one transaction (one change) per update.
pub struct AutomergeEngine {
    kind: WorkloadKind,
    dir: PathBuf,
    doc: Automerge,
}

impl AutomergeEngine {
    /// Automerge for `kind`, saving into `dir`.
    pub fn new(kind: WorkloadKind, dir: &Path) -> Self {
        Self {
            kind,
            dir: dir.to_owned(),
            doc: Automerge::new(),
        }
    }

    fn items(&self) -> Result<ObjId> {
        match self.doc.get(ROOT, "items")? {
            Some((automerge::Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err("no items map".into()),
        }
    }
}

fn item<D: ReadDoc>(doc: &D, items: &ObjId, id: &str) -> Result<ObjId> {
    match doc.get(items, id)? {
        Some((automerge::Value::Object(ObjType::Map), obj)) => Ok(obj),
        _ => Err(format!("no item {id}").into()),
    }
}

impl Engine for AutomergeEngine {
    fn build(&mut self, workload: &Workload) -> Result<()> {
        let items = if workload.kind == WorkloadKind::Todo {
            let mut tx = self.doc.transaction();
            let items = tx.put_object(ROOT, "items", ObjType::Map)?;
            tx.commit();
            Some(items)
        } else {
            None
        };
        for update in &workload.updates {
            let mut tx = self.doc.transaction();
            match (update, &items) {
                (Update::Set { key, value }, _) => tx.put(ROOT, key.as_str(), *value)?,
                (Update::Add { id, title }, Some(items)) => {
                    let obj = tx.put_object(items, id.as_str(), ObjType::Map)?;
                    tx.put(&obj, "title", title.as_str())?;
                    tx.put(&obj, "done", false)?;
                }
                (Update::Retitle { id, title }, Some(items)) => {
                    let obj = item(&tx, items, id)?;
                    tx.put(&obj, "title", title.as_str())?;
                }
                (Update::SetDone { id, done }, Some(items)) => {
                    let obj = item(&tx, items, id)?;
                    tx.put(&obj, "done", *done)?;
                }
                (Update::Delete { id }, Some(items)) => tx.delete(items, id.as_str())?,
                _ => return Err("a todo update outside the todo workload".into()),
            }
            tx.commit();
        }
        Ok(())
    }

    fn save(&mut self) -> Result<u64> {
        write_blob(&self.dir, &self.doc.save())
    }

    fn load(&mut self) -> Result<()> {
        let bytes = std::fs::read(blob_path(&self.dir))?;
        self.doc = Automerge::load(&bytes)?;
        Ok(())
    }

    fn read_all(&self) -> Result<Summary> {
        let mut summary = Summary::default();
        match self.kind {
            WorkloadKind::Map => {
                for entry in self.doc.map_range(ROOT, ..) {
                    let ValueRef::Scalar(ScalarValueRef::Int(value)) = entry.value else {
                        return Err(format!("{} is not an integer", entry.key).into());
                    };
                    summary.add_map_entry(&entry.key, value);
                }
            }
            WorkloadKind::Todo => {
                let items = self.items()?;
                for entry in self.doc.map_range(&items, ..) {
                    let obj = entry.id();
                    let title = match self.doc.get(&obj, "title")? {
                        Some((automerge::Value::Scalar(s), _)) => s.as_str().ok_or("title is not text")?.to_owned(),
                        _ => return Err("no title".into()),
                    };
                    let done = match self.doc.get(&obj, "done")? {
                        Some((automerge::Value::Scalar(s), _)) => s.as_bool().ok_or("done is not a boolean")?,
                        _ => return Err("no done flag".into()),
                    };
                    summary.add_todo_item(&entry.key, &title, done);
                }
            }
        }
        Ok(summary)
    }
}
