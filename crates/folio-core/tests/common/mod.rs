//! Test helpers shared by folio-core's integration tests.
//!
//! * [`ModelTest`]: given/when/then for a model's reducer, in the style of cqrs-es's `TestFramework`:
//!   `ModelTest::todo().given([...]).when("ADD_TODO", input).then_state(json!(...))` or `.then_rejected("CODE")`.
//! * [`Writer`]: builds correctly chained operations for a [`Document`] on a fixed, stepping clock.
#![allow(dead_code)]

use std::sync::Arc;

use folio_core::{
    Action, ApplyError, Branch, Document, DocumentId, ErasedModel, HlcTimestamp, ModelRegistry, ModelState, OpHash,
    Operation, Rejection, Scope,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// The document type of the built-in todo list.
pub const TODO: &str = "folio/todo-list";
/// The document type of the built-in JSON document.
pub const JSON: &str = "folio/json";

/// `(type, input)`: one action as given to a reducer.
pub fn act(action_type: &str, input: Value) -> (String, Value) {
    (action_type.to_owned(), input)
}

/// The subject of a given/when/then test: one model of the built-in registry.
pub struct ModelTest {
    model: Arc<dyn ErasedModel>,
}

impl ModelTest {
    /// The model registered as `document_type` in [`ModelRegistry::with_builtin`].
    pub fn new(document_type: &str) -> Self {
        let registry = ModelRegistry::with_builtin();
        let model = registry
            .get(document_type)
            .unwrap_or_else(|| panic!("no built-in model {document_type}"))
            .clone();
        Self { model }
    }

    /// `folio/todo-list`.
    pub fn todo() -> Self {
        Self::new(TODO)
    }

    /// `folio/json`.
    pub fn json() -> Self {
        Self::new(JSON)
    }

    /// Starts from the model's initial state.
    pub fn given_no_previous_actions(self) -> Given {
        let state = self.model.initial_state();
        Given {
            model: self.model,
            state,
        }
    }

    /// Starts from the state the model reaches by applying `actions`, each of which must be accepted.
    pub fn given<I, S>(self, actions: I) -> Given
    where
        I: IntoIterator<Item = (S, Value)>,
        S: AsRef<str>,
    {
        let mut given = self.given_no_previous_actions();
        for (i, (action_type, input)) in actions.into_iter().enumerate() {
            let action_type = action_type.as_ref();
            if let Err(rejection) = given.model.reduce(&mut given.state, action_type, &input) {
                panic!("given action #{i} {action_type} {input} was rejected: {rejection}");
            }
        }
        given
    }
}

/// A state reached by the given actions.
pub struct Given {
    model: Arc<dyn ErasedModel>,
    state: ModelState,
}

impl Given {
    /// The state so far, as JSON.
    pub fn state(&self) -> Value {
        self.model.state_to_json(&self.state)
    }

    /// Applies the action under test.
    pub fn when(mut self, action_type: &str, input: Value) -> When {
        let before = self.state();
        let result = self.model.reduce(&mut self.state, action_type, &input);
        When {
            action: format!("{action_type} {input}"),
            before,
            after: self.model.state_to_json(&self.state),
            result,
        }
    }
}

/// The outcome of the action under test.
#[must_use = "a When asserts nothing until then_* is called"]
pub struct When {
    action: String,
    before: Value,
    after: Value,
    result: Result<(), Rejection>,
}

impl When {
    /// The action was accepted and the state is now `expected`.
    pub fn then_state(self, expected: Value) {
        if let Err(rejection) = &self.result {
            panic!(
                "{} was rejected ({rejection}); expected the state {expected}",
                self.action
            );
        }
        assert_eq!(
            self.after, expected,
            "state after {}\n  actual: {}\nexpected: {}",
            self.action, self.after, expected
        );
    }

    /// The action was accepted and changed nothing.
    pub fn then_unchanged(self) {
        let before = self.before.clone();
        self.then_state(before);
    }

    /// The action was refused with `code`, and the state is as it was before it (reducers are all-or-nothing).
    /// Returns the rejection for further checks on its message.
    pub fn then_rejected(self, code: &str) -> Rejection {
        match self.result {
            Ok(()) => panic!(
                "{} was accepted (state {}); expected the rejection {code}",
                self.action, self.after
            ),
            Err(rejection) => {
                assert_eq!(rejection.code, code, "rejection of {}: {rejection}", self.action);
                assert!(!rejection.message.is_empty(), "rejection {code} without a message");
                assert_eq!(
                    self.after, self.before,
                    "{} was rejected ({code}) but changed the state",
                    self.action
                );
                rejection
            }
        }
    }
}

/// A fixed uuid for the n-th action of a test, so hashes are reproducible.
pub fn fixed_uuid(n: u64) -> Uuid {
    Uuid::from_u64_pair(0x0190_0000_0000_7000, 0x8000_0000_0000_0000 | n)
}

/// An action with a fixed id and timestamp.
pub fn fixed_action(n: u64, scope: Scope, action_type: &str, input: Value) -> Action {
    let mut action = Action::new(action_type, input, scope, HlcTimestamp::new(1_763_769_600_000 + n, 0));
    action.id = fixed_uuid(n);
    action
}

/// Writes operations for one document the way a writer does: each at its scope's next index, chained over the
/// scope's head, with reproducible ids and timestamps (one millisecond apart).
pub struct Writer {
    pub doc: Document,
    pub registry: ModelRegistry,
    pub log: Vec<Operation>,
    next: u64,
}

impl Writer {
    /// A document not yet created.
    pub fn new() -> Self {
        Self {
            doc: Document::empty(DocumentId(fixed_uuid(0)), Branch::default()),
            registry: ModelRegistry::with_builtin(),
            log: Vec::new(),
            next: 1,
        }
    }

    /// A document of `document_type` named "test", created.
    pub fn created(document_type: &str) -> Self {
        let mut w = Self::new();
        w.write(
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": document_type, "name": "test"}),
        )
        .expect("CREATE_DOCUMENT");
        w
    }

    /// The operation `action_type`/`input` in `scope` would be if written now (not applied).
    pub fn next_op(&mut self, scope: Scope, action_type: &str, input: Value) -> Operation {
        let action = fixed_action(self.next, scope, action_type, input);
        self.next += 1;
        Operation::new(
            action,
            self.doc.header.revision.get(scope),
            0,
            None,
            &self.doc.head(scope),
        )
    }

    /// Builds the next operation and applies it; keeps it in `log` when it is accepted.
    pub fn write(&mut self, scope: Scope, action_type: &str, input: Value) -> Result<Operation, ApplyError> {
        let op = self.next_op(scope, action_type, input);
        self.doc.apply(&op, &self.registry)?;
        self.log.push(op.clone());
        Ok(op)
    }

    /// The operations written so far in `scope`.
    pub fn ops(&self, scope: Scope) -> Vec<Operation> {
        self.log.iter().filter(|op| op.action.scope == scope).cloned().collect()
    }

    /// The hash of the last operation of `scope`, or zero.
    pub fn last_hash(&self, scope: Scope) -> OpHash {
        self.ops(scope).last().map_or(OpHash::ZERO, |op| op.hash)
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

/// The rejection code inside an [`ApplyError::Rejected`].
pub fn rejection_code(err: &ApplyError) -> &str {
    match err {
        ApplyError::Rejected(r) => &r.code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}
