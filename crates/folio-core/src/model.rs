//! Document models: a state and a pure reducer over single-argument actions, typed through serde, and a registry
//! that runs them on JSON for callers that do not know the Rust types (the server, sync).

use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IntoDeserializer, MapAccess, value::BorrowedStrDeserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::causal::ActionMeta;
use crate::hash::{OpHash, state_hash};
use crate::operation::Action;

/// A reducer's refusal of an action: a stable code (`EMPTY_TITLE`) and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// Stable, SCREAMING_SNAKE_CASE code.
    pub code: String,
    /// Human sentence.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// The action's type is not one the model knows.
    pub fn unknown_action(document_type: &str, action_type: &str) -> Self {
        Self::new(
            "UNKNOWN_ACTION",
            format!("{document_type} has no action {action_type:?}"),
        )
    }
}

/// A document model: an initial state and a pure, deterministic reducer that mutates the state in place.
///
/// * `State` must serialize deterministically: use `BTreeMap`, never `HashMap`, for maps.
/// * `Action` is an enum adjacently tagged as `#[serde(tag = "type", content = "input")]`, so a folio action
///   `{ type, input }` decodes into it without copying.
/// * `reduce` must not do I/O, read clocks or randomness: every replica must reach the same state from the same
///   operations. When it returns an error the caller discards the state it was working on, so a reducer may fail
///   after a partial change. Leaving the state untouched on an error is still better ([`crate::Document::apply`]
///   changes the document in place); the built-in models do.
pub trait DocumentModel: Send + Sync + 'static {
    /// The model's name, `namespace/name` (`folio/todo-list`).
    const DOCUMENT_TYPE: &'static str;
    /// The action types the model accepts, for listings.
    const ACTION_TYPES: &'static [&'static str];
    /// The document's global state.
    type State: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static;
    /// The model's actions.
    type Action: DeserializeOwned;

    /// Applies `action` to `state`, or refuses it with a named rejection.
    fn reduce(state: &mut Self::State, action: Self::Action) -> Result<(), Rejection>;

    /// Applies `action` knowing its author, clock and causal context (`meta`): models that resolve concurrent edits
    /// (construction prevails over demolition) read it. The default ignores it and calls [`DocumentModel::reduce`].
    fn reduce_with(state: &mut Self::State, action: Self::Action, meta: &ActionMeta<'_>) -> Result<(), Rejection> {
        let _ = meta;
        Self::reduce(state, action)
    }

    /// Compresses a run of actions not yet sent to any replica, applied in this order to `state`, into fewer
    /// actions with the same effect (create then delete is nothing; create then updates is one create with the
    /// final state). `None` (the default) keeps them as they are. Returned actions keep ids, clocks and contexts of
    /// the actions they replace, so they sort where those did.
    fn compress(state: &Self::State, actions: &[Action]) -> Option<Vec<Action>> {
        let _ = (state, actions);
        None
    }

    /// Checks the state an action just produced; an error refuses the action. The default refuses a state nested
    /// deeper than [`crate::depth::MAX_DEPTH`] (see [`crate::depth`]: deeper states crash whoever reads them), at
    /// the cost of walking the state after every action. A model whose state cannot nest without bound by its type
    /// (a fixed shape), or whose reducer bounds depth itself, overrides this with `Ok(())`.
    fn check_state(state: &Self::State) -> Result<(), Rejection> {
        crate::depth::check_state_depth(state, crate::depth::MAX_DEPTH)
    }
}

/// Decodes a folio action (`type` plus `input`) into a model's adjacently tagged action enum without copying the
/// input.
pub fn decode_action<A: DeserializeOwned>(action_type: &str, input: &Value) -> Result<A, serde_json::Error> {
    A::deserialize(TaggedAction { action_type, input })
}

struct TaggedAction<'a> {
    action_type: &'a str,
    input: &'a Value,
}

impl<'de> serde::Deserializer<'de> for TaggedAction<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedAccess { action: self, step: 0 })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct TaggedAccess<'a> {
    action: TaggedAction<'a>,
    step: u8,
}

impl<'de> MapAccess<'de> for TaggedAccess<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.step {
            0 => "type",
            1 => "input",
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Self::Error> {
        self.step += 1;
        if self.step == 1 {
            seed.deserialize(self.action.action_type.into_deserializer())
        } else {
            seed.deserialize(StrictInput(self.action.input))
        }
    }
}

/// The action's input as a deserializer that reads a struct only from a JSON object: serde's derive would also take
/// an array of the fields' values in order (`["milk", "Buy milk"]` for `{id, title}`), which no action's wire format
/// allows. Everything else reads the input as it is.
struct StrictInput<'a>(&'a Value);

macro_rules! forward_to_value {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method($($arg,)* visitor)
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for StrictInput<'de> {
    type Error = serde_json::Error;

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(visitor)
    }

    forward_to_value! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }
}

/// A model's state behind type erasure; only the model that made it can read it.
pub type ModelState = Box<dyn Any + Send + Sync>;

/// A document model usable without its Rust types: on JSON actions, with erased state.
pub trait ErasedModel: Send + Sync {
    /// The model's name.
    fn document_type(&self) -> &'static str;
    /// Its action types.
    fn action_types(&self) -> &'static [&'static str];
    /// The initial (default) state.
    fn initial_state(&self) -> ModelState;
    /// Applies one action (`type`, `input`) to `state`, knowing nothing of its author.
    fn reduce(&self, state: &mut ModelState, action_type: &str, input: &Value) -> Result<(), Rejection> {
        self.reduce_meta(state, action_type, input, &ActionMeta::unknown())
    }
    /// Applies `action` to `state` with its metadata (author, clock, causal context).
    fn reduce_action(&self, state: &mut ModelState, action: &Action) -> Result<(), Rejection> {
        self.reduce_meta(state, &action.action_type, &action.input, &ActionMeta::of(action))
    }
    /// Applies one action with `meta`.
    fn reduce_meta(
        &self,
        state: &mut ModelState,
        action_type: &str,
        input: &Value,
        meta: &ActionMeta<'_>,
    ) -> Result<(), Rejection>;
    /// See [`DocumentModel::compress`].
    fn compress(&self, state: &ModelState, actions: &[Action]) -> Option<Vec<Action>>;
    /// The state as JSON.
    fn state_to_json(&self, state: &ModelState) -> Value;
    /// The state as JSON text, written straight from the typed state.
    fn state_to_string(&self, state: &ModelState) -> String;
    /// A state from JSON (keyframes, initial states).
    fn state_from_json(&self, json: &str) -> Result<ModelState, Rejection>;
    /// A deep copy.
    fn clone_state(&self, state: &ModelState) -> ModelState;
    /// blake3 of the state's JSON.
    fn state_hash(&self, state: &ModelState) -> OpHash;
    /// The length of the state's JSON, a stand-in for its size in memory.
    fn state_size(&self, state: &ModelState) -> usize;
}

/// Adapts a typed [`DocumentModel`] to [`ErasedModel`].
pub struct ModelAdapter<M>(PhantomData<fn() -> M>);

impl<M> Default for ModelAdapter<M> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn typed<M: DocumentModel>(state: &ModelState) -> &M::State {
    state
        .downcast_ref::<M::State>()
        .unwrap_or_else(|| panic!("state handed to {} was made by another model", M::DOCUMENT_TYPE))
}

struct CountingWriter(usize);

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<M: DocumentModel> ErasedModel for ModelAdapter<M> {
    fn document_type(&self) -> &'static str {
        M::DOCUMENT_TYPE
    }

    fn action_types(&self) -> &'static [&'static str] {
        M::ACTION_TYPES
    }

    fn initial_state(&self) -> ModelState {
        Box::new(M::State::default())
    }

    fn compress(&self, state: &ModelState, actions: &[Action]) -> Option<Vec<Action>> {
        M::compress(typed::<M>(state), actions)
    }

    fn reduce_meta(
        &self,
        state: &mut ModelState,
        action_type: &str,
        input: &Value,
        meta: &ActionMeta<'_>,
    ) -> Result<(), Rejection> {
        if !M::ACTION_TYPES.contains(&action_type) {
            return Err(Rejection::unknown_action(M::DOCUMENT_TYPE, action_type));
        }
        let action: M::Action = decode_action(action_type, input)
            .map_err(|e| Rejection::new("INVALID_INPUT", format!("input of {action_type} does not fit: {e}")))?;
        let state = state
            .downcast_mut::<M::State>()
            .unwrap_or_else(|| panic!("state handed to {} was made by another model", M::DOCUMENT_TYPE));
        M::reduce_with(state, action, meta)?;
        M::check_state(state)
    }

    fn state_to_json(&self, state: &ModelState) -> Value {
        serde_json::to_value(typed::<M>(state)).unwrap_or(Value::Null)
    }

    fn state_to_string(&self, state: &ModelState) -> String {
        serde_json::to_string(typed::<M>(state)).unwrap_or_else(|_| "null".to_owned())
    }

    fn state_from_json(&self, json: &str) -> Result<ModelState, Rejection> {
        serde_json::from_str::<M::State>(json)
            .map(|s| Box::new(s) as ModelState)
            .map_err(|e| Rejection::new("INVALID_STATE", format!("not a state of {}: {e}", M::DOCUMENT_TYPE)))
    }

    fn clone_state(&self, state: &ModelState) -> ModelState {
        Box::new(typed::<M>(state).clone())
    }

    fn state_hash(&self, state: &ModelState) -> OpHash {
        state_hash(typed::<M>(state))
    }

    fn state_size(&self, state: &ModelState) -> usize {
        let mut w = CountingWriter(0);
        let _ = serde_json::to_writer(&mut w, typed::<M>(state));
        w.0
    }
}

/// The models a replica knows, by document type.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<&'static str, Arc<dyn ErasedModel>>,
}

impl std::fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.models.keys()).finish()
    }
}

impl ModelRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with folio's built-in models (`folio/todo-list`, `folio/json`).
    pub fn with_builtin() -> Self {
        let mut r = Self::new();
        r.register::<crate::models::TodoList>();
        r.register::<crate::models::JsonDocument>();
        r
    }

    /// Adds a typed model.
    pub fn register<M: DocumentModel>(&mut self) -> &mut Self {
        self.register_erased(Arc::new(ModelAdapter::<M>::default()))
    }

    /// Adds a model behind type erasure.
    pub fn register_erased(&mut self, model: Arc<dyn ErasedModel>) -> &mut Self {
        self.models.insert(model.document_type(), model);
        self
    }

    /// The model of `document_type`.
    pub fn get(&self, document_type: &str) -> Option<&Arc<dyn ErasedModel>> {
        self.models.get(document_type)
    }

    /// Every model, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ErasedModel>> {
        self.models.values()
    }
}
