//! `folio/json`: a generic JSON document for apps that write no Rust, edited through JSON Pointers (RFC 6901).
//!
//! | action | input | effect |
//! | --- | --- | --- |
//! | `SET` | `{path, value}` | sets the value, creating missing parent objects; `-` or the length appends to an array |
//! | `DELETE` | `{path}` | removes the value; a path that is not there is not an error (idempotent) |
//! | `MERGE` | `{path, value}` | shallow-merges an object into the object at `path` (created when missing) |
//! | `INSERT` | `{path, index, value}` | inserts into the array at `path` (created when missing) |
//! | `REMOVE` | `{path, index}` | removes an element of the array at `path` |
//!
//! Bad pointers and type clashes are refused with a named error, never a panic. The same actions edit every
//! document's `local` scope.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{DocumentModel, Rejection, decode_action};

/// The `folio/json` model.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonDocument;

/// The state: any JSON value, an empty object at first.
///
/// It serializes with every object's keys sorted (as [`crate::hash::Canonical`]), so its JSON and its state hash do
/// not depend on how `serde_json` was built: with its `preserve_order` feature (which any crate in a build can turn
/// on) objects would keep insertion order instead, and replicas built differently would disagree.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct JsonState(pub Value);

impl Serialize for JsonState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::hash::Canonical(&self.0).serialize(s)
    }
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState(Value::Object(Map::new()))
    }
}

/// The model's actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "input", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JsonAction {
    /// `SET {path, value}`.
    Set(PathValue),
    /// `DELETE {path}`.
    Delete(PathOnly),
    /// `MERGE {path, value}`.
    Merge(PathValue),
    /// `INSERT {path, index, value}`.
    Insert(PathIndexValue),
    /// `REMOVE {path, index}`.
    Remove(PathIndex),
}

/// `{path, value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathValue {
    /// A JSON Pointer.
    pub path: String,
    /// The value.
    pub value: Value,
}

/// `{path}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathOnly {
    /// A JSON Pointer.
    pub path: String,
}

/// `{path, index, value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathIndexValue {
    /// A JSON Pointer to an array.
    pub path: String,
    /// Where to insert.
    pub index: usize,
    /// The value.
    pub value: Value,
}

/// `{path, index}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathIndex {
    /// A JSON Pointer to an array.
    pub path: String,
    /// The element to remove.
    pub index: usize,
}

/// Why `folio/json` refuses an action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The path is not a JSON Pointer.
    #[error("{0:?} is not a JSON Pointer (it must be empty or start with '/', with '~' only in '~0' and '~1')")]
    BadPointer(String),
    /// The path goes through, or names, a value of the wrong type.
    #[error("at {path:?}: expected {expected}, found {found}")]
    TypeClash {
        /// The pointer up to the clash.
        path: String,
        /// What the action needed there.
        expected: &'static str,
        /// What was there.
        found: &'static str,
    },
    /// An array index is past the end.
    #[error("at {path:?}: index {index} is out of bounds for an array of {len}")]
    IndexOutOfBounds {
        /// The pointer of the array.
        path: String,
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The path names nothing.
    #[error("nothing at {0:?}")]
    PathNotFound(String),
    /// The value would sit deeper in the state than [`crate::depth::MAX_DEPTH`] levels.
    #[error("the action would nest the state {0} levels deep; at most {max} are allowed", max = crate::depth::MAX_DEPTH)]
    TooDeep(usize),
}

impl From<JsonError> for Rejection {
    fn from(e: JsonError) -> Self {
        let code = match e {
            JsonError::BadPointer(_) => "BAD_POINTER",
            JsonError::TypeClash { .. } => "TYPE_CLASH",
            JsonError::IndexOutOfBounds { .. } => "INDEX_OUT_OF_BOUNDS",
            JsonError::PathNotFound(_) => "PATH_NOT_FOUND",
            JsonError::TooDeep(_) => crate::depth::TOO_DEEP,
        };
        Rejection::new(code, e.to_string())
    }
}

/// The action types of `folio/json`.
pub const JSON_ACTION_TYPES: &[&str] = &["SET", "DELETE", "MERGE", "INSERT", "REMOVE"];

impl DocumentModel for JsonDocument {
    const DOCUMENT_TYPE: &'static str = "folio/json";
    const ACTION_TYPES: &'static [&'static str] = JSON_ACTION_TYPES;
    type State = JsonState;
    type Action = JsonAction;

    fn reduce(state: &mut JsonState, action: JsonAction) -> Result<(), Rejection> {
        apply(&mut state.0, action).map_err(Rejection::from)
    }

    /// [`apply`] refuses, before changing anything, an action that would nest the state too deep.
    fn check_state(_: &JsonState) -> Result<(), Rejection> {
        Ok(())
    }
}

/// Applies a `folio/json` action given as `type` and `input` to `target` (used for every document's local scope).
pub fn apply_json_action(target: &mut Value, action_type: &str, input: &Value) -> Result<(), Rejection> {
    if !JSON_ACTION_TYPES.contains(&action_type) {
        return Err(Rejection::unknown_action("the local scope", action_type));
    }
    let action: JsonAction = decode_action(action_type, input)
        .map_err(|e| Rejection::new("INVALID_INPUT", format!("input of {action_type} does not fit: {e}")))?;
    apply(target, action).map_err(Rejection::from)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Splits a JSON Pointer into unescaped tokens.
pub fn parse_pointer(path: &str) -> Result<Vec<String>, JsonError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(JsonError::BadPointer(path.to_owned()));
    };
    rest.split('/')
        .map(|raw| {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(JsonError::BadPointer(path.to_owned())),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

fn pointer_of(tokens: &[String]) -> String {
    tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// An RFC 6901 array index: `0`, or digits without a leading zero (no sign, no `-`); `None` for anything else,
/// including an index too large for `usize`.
fn parse_index(token: &str) -> Option<usize> {
    let valid =
        !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'));
    if valid { token.parse().ok() } else { None }
}

fn array_index(token: &str, len: usize, tokens: &[String]) -> Result<usize, JsonError> {
    let Some(index) = parse_index(token) else {
        return Err(JsonError::TypeClash {
            path: pointer_of(tokens),
            expected: "an array index",
            found: "a key",
        });
    };
    if index >= len {
        return Err(JsonError::IndexOutOfBounds {
            path: pointer_of(&tokens[..tokens.len().saturating_sub(1)]),
            index,
            len,
        });
    }
    Ok(index)
}

/// Walks to `tokens`, creating missing object members as empty objects (or, for the last one, as `leaf`).
fn walk_create<'a>(root: &'a mut Value, tokens: &[String], leaf: fn() -> Value) -> Result<&'a mut Value, JsonError> {
    let mut current = root;
    for (depth, token) in tokens.iter().enumerate() {
        let is_last = depth + 1 == tokens.len();
        current = match current {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| if is_last { leaf() } else { Value::Object(Map::new()) }),
            Value::Array(items) => {
                let len = items.len();
                let i = array_index(token, len, &tokens[..=depth])?;
                &mut items[i]
            }
            other => {
                return Err(JsonError::TypeClash {
                    path: pointer_of(&tokens[..depth]),
                    expected: "an object or an array",
                    found: kind(other),
                });
            }
        };
    }
    Ok(current)
}

/// Walks to `tokens` without creating anything; `None` when some part is missing.
fn walk<'a>(root: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut current = root;
    for token in tokens {
        current = match current {
            Value::Object(map) => map.get_mut(token)?,
            Value::Array(items) => items.get_mut(parse_index(token)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Whether `tokens` name an existing value, changing nothing: `Ok(true)` when they do, `Ok(false)` when
/// [`walk_create`] would create it, and the error [`walk_create`] would return otherwise.
fn exists(root: &Value, tokens: &[String]) -> Result<bool, JsonError> {
    let mut current = root;
    for (depth, token) in tokens.iter().enumerate() {
        current = match current {
            Value::Object(map) => match map.get(token) {
                Some(v) => v,
                None => return Ok(false),
            },
            Value::Array(items) => &items[array_index(token, items.len(), &tokens[..=depth])?],
            other => {
                return Err(JsonError::TypeClash {
                    path: pointer_of(&tokens[..depth]),
                    expected: "an object or an array",
                    found: kind(other),
                });
            }
        };
    }
    Ok(true)
}

/// Refuses an action that would put `value` below `tokens` (and `extra` more levels: an array it is inserted into)
/// deeper than [`crate::depth::MAX_DEPTH`]. The state above the path is as deep as the path is long at most, and
/// every state is checked this way, so no state ever nests deeper than the bound (see [`crate::depth`]).
fn check_depth(tokens: &[String], extra: usize, value: &Value) -> Result<(), JsonError> {
    let depth = tokens.len() + extra + crate::depth::json_depth(value);
    if depth > crate::depth::MAX_DEPTH {
        Err(JsonError::TooDeep(depth))
    } else {
        Ok(())
    }
}

/// Parses a pointer that [`check_depth`] may accept: a path longer than the bound is refused before its tokens are
/// unescaped one by one.
fn parse_bounded(path: &str) -> Result<Vec<String>, JsonError> {
    let segments = path.bytes().filter(|&b| b == b'/').count();
    if segments > crate::depth::MAX_DEPTH {
        return Err(JsonError::TooDeep(segments));
    }
    parse_pointer(path)
}

fn apply(root: &mut Value, action: JsonAction) -> Result<(), JsonError> {
    match action {
        JsonAction::Set(PathValue { path, value }) => {
            let tokens = parse_bounded(&path)?;
            check_depth(&tokens, 0, &value)?;
            let Some((last, parents)) = tokens.split_last() else {
                *root = value;
                return Ok(());
            };
            let parent = walk_create(root, parents, || Value::Object(Map::new()))?;
            match parent {
                Value::Object(map) => {
                    map.insert(last.clone(), value);
                }
                Value::Array(items) => {
                    if last == "-" || *last == items.len().to_string() {
                        items.push(value);
                    } else {
                        let i = array_index(last, items.len(), &tokens)?;
                        items[i] = value;
                    }
                }
                other => {
                    return Err(JsonError::TypeClash {
                        path: pointer_of(parents),
                        expected: "an object or an array",
                        found: kind(other),
                    });
                }
            }
            Ok(())
        }
        JsonAction::Delete(PathOnly { path }) => {
            let tokens = parse_pointer(&path)?;
            let Some((last, parents)) = tokens.split_last() else {
                *root = Value::Object(Map::new());
                return Ok(());
            };
            match walk(root, parents) {
                Some(Value::Object(map)) => {
                    map.remove(last);
                }
                Some(Value::Array(items)) => {
                    if let Some(i) = parse_index(last)
                        && i < items.len()
                    {
                        items.remove(i);
                    }
                }
                _ => {}
            }
            Ok(())
        }
        JsonAction::Merge(PathValue { path, value }) => {
            let tokens = parse_bounded(&path)?;
            check_depth(&tokens, 0, &value)?;
            let Value::Object(patch) = value else {
                return Err(JsonError::TypeClash {
                    path,
                    expected: "an object to merge",
                    found: kind(&value),
                });
            };
            match walk_create(root, &tokens, || Value::Object(Map::new()))? {
                Value::Object(map) => {
                    map.extend(patch);
                    Ok(())
                }
                other => Err(JsonError::TypeClash {
                    path,
                    expected: "an object",
                    found: kind(other),
                }),
            }
        }
        JsonAction::Insert(PathIndexValue { path, index, value }) => {
            let tokens = parse_bounded(&path)?;
            check_depth(&tokens, 1, &value)?;
            // Refuse before creating anything: a rejected action leaves the state as it was.
            if index > 0 && !exists(root, &tokens)? {
                return Err(JsonError::IndexOutOfBounds { path, index, len: 0 });
            }
            match walk_create(root, &tokens, || Value::Array(Vec::new()))? {
                Value::Array(items) if index <= items.len() => {
                    items.insert(index, value);
                    Ok(())
                }
                Value::Array(items) => Err(JsonError::IndexOutOfBounds {
                    path,
                    index,
                    len: items.len(),
                }),
                other => Err(JsonError::TypeClash {
                    path,
                    expected: "an array",
                    found: kind(other),
                }),
            }
        }
        JsonAction::Remove(PathIndex { path, index }) => {
            let tokens = parse_pointer(&path)?;
            match walk(root, &tokens) {
                Some(Value::Array(items)) if index < items.len() => {
                    items.remove(index);
                    Ok(())
                }
                Some(Value::Array(items)) => Err(JsonError::IndexOutOfBounds {
                    path,
                    index,
                    len: items.len(),
                }),
                Some(other) => Err(JsonError::TypeClash {
                    path,
                    expected: "an array",
                    found: kind(other),
                }),
                None => Err(JsonError::PathNotFound(path)),
            }
        }
    }
}
