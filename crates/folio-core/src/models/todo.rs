//! `folio/todo-list`: a list of items that follows folio's conflict principles.
//!
//! * an add of an existing id updates it (creating an id twice updates the first with the second);
//! * an update of a deleted item recreates it from its tombstone, updated (upsert);
//! * deletes are idempotent; deleted items are kept as tombstones so they can be recreated;
//! * construction prevails over demolition: a delete whose author had not seen an update of the item (concurrent
//!   edits on two replicas) leaves the item alive, updated. Each item keeps, per replica, the clock of the latest
//!   add or update it made (`by`), and a delete removes the item only when its author had seen all of them;
//! * the last action in the total order decides each field (the reducer simply applies actions in that order).
//!
//! Unsent actions compress: an item created and deleted before it was ever sent is nothing, created then updated
//! is one `ADD_TODO` with the final title and flag, several updates are one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::causal::{ActionMeta, CausalContext, Stamp, order_key};
use crate::model::{DocumentModel, Rejection, decode_action};
use crate::operation::Action;

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
    /// Per replica, the clock of the latest add or update of the item it made (absent for actions of unknown
    /// authors): a delete removes the item only when its author had seen all of them.
    #[serde(default, skip_serializing_if = "CausalContext::is_empty")]
    pub by: CausalContext,
}

impl TodoItem {
    fn new(title: String, done: bool) -> Self {
        Self {
            title,
            done,
            by: CausalContext::default(),
        }
    }

    /// Whether the author of `meta` had seen every add and update of this item.
    fn seen_by(&self, meta: &ActionMeta<'_>) -> bool {
        self.by.0.iter().all(|(replica, at)| {
            meta.has_seen(&Stamp {
                at: *at,
                replica: replica.clone(),
            })
        })
    }

    fn built_by(&mut self, meta: &ActionMeta<'_>) {
        if let Some(replica) = meta.replica {
            self.by.observe(replica, meta.at);
        }
    }
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
    /// Whether it starts done (an add of an existing item sets the flag only when given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
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
        Self::reduce_with(state, action, &ActionMeta::unknown())
    }

    /// A todo list has a fixed shape (items of strings and booleans): it cannot nest.
    fn check_state(_: &TodoState) -> Result<(), Rejection> {
        Ok(())
    }

    fn reduce_with(state: &mut TodoState, action: TodoAction, meta: &ActionMeta<'_>) -> Result<(), Rejection> {
        match action {
            TodoAction::AddTodo(AddTodo { id, title, done }) => {
                check_id(&id)?;
                check_title(&title)?;
                state.deleted.remove(&id);
                let item = state
                    .items
                    .entry(id)
                    .and_modify(|item| {
                        item.title.clone_from(&title);
                        if let Some(d) = done {
                            item.done = d;
                        }
                    })
                    .or_insert_with(|| TodoItem::new(title, done.unwrap_or(false)));
                item.built_by(meta);
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
                            None => TodoItem::new(title.clone().ok_or_else(|| TodoError::NotFound(id.clone()))?, false),
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
                item.built_by(meta);
            }
            TodoAction::DeleteTodo(DeleteTodo { id }) => {
                check_id(&id)?;
                // Construction prevails over demolition: an add or update the deleter had not seen keeps the item.
                if state.items.get(&id).is_some_and(|item| item.seen_by(meta))
                    && let Some(item) = state.items.remove(&id)
                {
                    state.deleted.insert(id, item);
                }
            }
            TodoAction::ClearDone(ClearDone {}) => {
                let done: Vec<String> = state
                    .items
                    .iter()
                    .filter(|(_, item)| item.done && item.seen_by(meta))
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

    fn compress(state: &TodoState, actions: &[Action]) -> Option<Vec<Action>> {
        compress(state, actions)
    }
}

/// The item `id` in `state`: live, tombstoned, or absent.
fn item_of(state: &TodoState, id: &str) -> (Option<TodoItem>, Option<TodoItem>) {
    (state.items.get(id).cloned(), state.deleted.get(id).cloned())
}

/// Applies `actions` to a state holding only item `id` as `state` has it; `None` when one is refused.
fn simulate(state: &TodoState, id: &str, actions: &[&Action]) -> Option<(Option<TodoItem>, Option<TodoItem>)> {
    let (live, dead) = item_of(state, id);
    let mut s = TodoState::default();
    if let Some(item) = live {
        s.items.insert(id.to_owned(), item);
    }
    if let Some(item) = dead {
        s.deleted.insert(id.to_owned(), item);
    }
    for action in actions {
        let typed: TodoAction = decode_action(&action.action_type, &action.input).ok()?;
        TodoList::reduce_with(&mut s, typed, &ActionMeta::of(action)).ok()?;
    }
    Some(item_of(&s, id))
}

/// An action like `last` (same id, clock, author and context, so it sorts where `last` did) of another type.
fn like(last: &Action, action_type: &str, input: serde_json::Value) -> Action {
    let mut a = last.clone();
    a.action_type = action_type.to_owned();
    a.input = input;
    a
}

/// See [`DocumentModel::compress`]: per item, a run of adds, updates and deletes becomes at most one action with
/// the same end result; an item created and deleted within the run disappears. A run with `CLEAR_DONE` (which
/// touches many items) or any action the reducer would refuse is left as it is.
fn compress(state: &TodoState, actions: &[Action]) -> Option<Vec<Action>> {
    let mut by_item: BTreeMap<String, Vec<&Action>> = BTreeMap::new();
    for action in actions {
        let id = match decode_action::<TodoAction>(&action.action_type, &action.input).ok()? {
            TodoAction::AddTodo(a) => a.id,
            TodoAction::UpdateTodo(u) => u.id,
            TodoAction::DeleteTodo(d) => d.id,
            TodoAction::ClearDone(_) => return None,
        };
        by_item.entry(id).or_default().push(action);
    }
    let mut out: Vec<Action> = Vec::with_capacity(actions.len());
    for (id, run) in by_item {
        let last = *run.last()?;
        let end = simulate(state, &id, &run)?;
        let existed = item_of(state, &id) != (None, None);
        let candidate: Vec<Action> = match (&end, existed) {
            ((Some(item), _), false) => vec![like(
                last,
                "ADD_TODO",
                serde_json::json!({ "id": id, "title": item.title, "done": item.done }),
            )],
            // Created and deleted before anyone saw it: nothing.
            ((None, _), false) => Vec::new(),
            ((Some(item), _), true) => vec![like(
                last,
                "UPDATE_TODO",
                serde_json::json!({ "id": id, "title": item.title, "done": item.done }),
            )],
            ((None, _), true) => vec![like(last, "DELETE_TODO", serde_json::json!({ "id": id }))],
        };
        let refs: Vec<&Action> = candidate.iter().collect();
        // Equal end result, or (by design) nothing for an item created and deleted within the run.
        let same = simulate(state, &id, &refs).as_ref() == Some(&end);
        if candidate.len() < run.len() && (same || candidate.is_empty()) {
            out.extend(candidate);
        } else {
            out.extend(run.into_iter().cloned());
        }
    }
    if out.len() >= actions.len() {
        return None;
    }
    out.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    Some(out)
}
