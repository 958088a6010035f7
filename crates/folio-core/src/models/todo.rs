//! `folio/todo-list`: a list of items that follows folio's conflict principles.
//!
//! * an add of an existing id updates it (creating an id twice updates the first with the second);
//! * an update of a deleted item recreates it from its tombstone, updated (upsert);
//! * deletes are idempotent; deleted items are kept as tombstones so they can be recreated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DocumentModel, Rejection};

/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 1000;

/// The `folio/todo-list` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct TodoList;

/// One item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoItem {
    /// The item's title, 1 to 1,000 characters.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}

/// The state: live items and tombstones, each by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TodoState {
    /// Live items.
    pub items: BTreeMap<String, TodoItem>,
    /// Deleted items, kept so that a later update recreates them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<String, TodoItem>,
}

/// The model's actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "input", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TodoAction {
    /// `ADD_TODO {id, title}`.
    AddTodo(AddTodo),
    /// `UPDATE_TODO {id, title?, done?}`.
    UpdateTodo(UpdateTodo),
    /// `DELETE_TODO {id}`.
    DeleteTodo(DeleteTodo),
    /// `CLEAR_DONE {}`.
    ClearDone(ClearDone),
}

/// Input of `ADD_TODO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddTodo {
    /// The item's id.
    pub id: String,
    /// Its title.
    pub title: String,
}

/// Input of `UPDATE_TODO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTodo {
    /// The item's id.
    pub id: String,
    /// A new title.
    #[serde(default)]
    pub title: Option<String>,
    /// A new done flag.
    #[serde(default)]
    pub done: Option<bool>,
}

/// Input of `DELETE_TODO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteTodo {
    /// The item's id.
    pub id: String,
}

/// Input of `CLEAR_DONE` (empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearDone {}

/// Why the todo list refuses an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TodoError {
    /// A title is empty (or only white space).
    #[error("the title is empty")]
    EmptyTitle,
    /// A title is over [`MAX_TITLE_CHARS`] characters.
    #[error("the title has {0} characters, over the limit of 1000")]
    TitleTooLong(usize),
    /// An item id is empty.
    #[error("the item id is empty")]
    EmptyId,
    /// An update names an item that never existed and gives no title to create it with.
    #[error("no item {0:?} to update, and no title to create it with")]
    NotFound(String),
}

impl From<TodoError> for Rejection {
    fn from(e: TodoError) -> Self {
        let code = match e {
            TodoError::EmptyTitle => "EMPTY_TITLE",
            TodoError::TitleTooLong(_) => "TITLE_TOO_LONG",
            TodoError::EmptyId => "EMPTY_ID",
            TodoError::NotFound(_) => "TODO_NOT_FOUND",
        };
        Rejection::new(code, e.to_string())
    }
}

fn check_title(title: &str) -> Result<(), TodoError> {
    if title.trim().is_empty() {
        return Err(TodoError::EmptyTitle);
    }
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(TodoError::TitleTooLong(chars));
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), TodoError> {
    if id.is_empty() { Err(TodoError::EmptyId) } else { Ok(()) }
}

impl DocumentModel for TodoList {
    const DOCUMENT_TYPE: &'static str = "folio/todo-list";
    const ACTION_TYPES: &'static [&'static str] = &["ADD_TODO", "UPDATE_TODO", "DELETE_TODO", "CLEAR_DONE"];
    type State = TodoState;
    type Action = TodoAction;

    fn reduce(state: &mut TodoState, action: TodoAction) -> Result<(), Rejection> {
        match action {
            TodoAction::AddTodo(AddTodo { id, title }) => {
                check_id(&id)?;
                check_title(&title)?;
                state.deleted.remove(&id);
                state
                    .items
                    .entry(id)
                    .and_modify(|item| item.title.clone_from(&title))
                    .or_insert(TodoItem { title, done: false });
            }
            TodoAction::UpdateTodo(UpdateTodo { id, title, done }) => {
                check_id(&id)?;
                if let Some(t) = &title {
                    check_title(t)?;
                }
                let item = match state.items.get_mut(&id) {
                    Some(item) => item,
                    None => {
                        let revived = match state.deleted.remove(&id) {
                            Some(item) => item,
                            None => TodoItem {
                                title: title.clone().ok_or_else(|| TodoError::NotFound(id.clone()))?,
                                done: false,
                            },
                        };
                        state.items.entry(id).or_insert(revived)
                    }
                };
                if let Some(t) = title {
                    item.title = t;
                }
                if let Some(d) = done {
                    item.done = d;
                }
            }
            TodoAction::DeleteTodo(DeleteTodo { id }) => {
                check_id(&id)?;
                if let Some(item) = state.items.remove(&id) {
                    state.deleted.insert(id, item);
                }
            }
            TodoAction::ClearDone(ClearDone {}) => {
                let done: Vec<String> = state
                    .items
                    .iter()
                    .filter(|(_, item)| item.done)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in done {
                    if let Some(item) = state.items.remove(&id) {
                        state.deleted.insert(id, item);
                    }
                }
            }
        }
        Ok(())
    }
}
