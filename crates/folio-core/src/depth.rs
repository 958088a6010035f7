//! The nesting bound of states. Serializing, hashing, cloning and dropping a JSON value or a serde state recurse once
//! per level, so a state nested a few hundred thousand levels deep overflows a thread's stack wherever it is next
//! read: a crash no caller can catch, repeated on every restart and carried to every replica by sync. No state that
//! a reducer produces may nest deeper than [`MAX_DEPTH`]; an action that would make one is refused with
//! [`TOO_DEEP`] before anything is stored.
//!
//! Depth counts arrays and objects: a scalar is 0 deep, `[]` and `{}` are 1, `{"a": [1]}` is 2. The bound equals
//! the HTTP server's bound on request bodies, so any value a request may carry fits at the top of a state.

use serde::Serialize;
use serde_json::Value;

use crate::model::Rejection;

/// The deepest nesting of arrays and objects a state may have.
pub const MAX_DEPTH: usize = 64;

/// The code of a refusal for depth.
pub const TOO_DEEP: &str = "STATE_TOO_DEEP";

/// The refusal of an action that would nest a state deeper than [`MAX_DEPTH`].
pub fn too_deep(depth: usize) -> Rejection {
    Rejection::new(
        TOO_DEEP,
        format!("the action would nest the state {depth} levels deep; at most {MAX_DEPTH} are allowed"),
    )
}

/// The nesting depth of `value`, counted without recursion (so that any value, however deep, can be measured).
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, above)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(above + 1);
                stack.extend(items.iter().map(|item| (item, above + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(above + 1);
                stack.extend(map.values().map(|item| (item, above + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Checks that `state` (any serializable state) nests at most `max` levels: it is serialized into nothing and the
/// serialization stops at the first level past `max`, so even a state too deep to serialize whole is measured
/// safely (as long as it is not deeper than the stack, which a state checked after every action never becomes).
pub fn check_state_depth<T: Serialize + ?Sized>(state: &T, max: usize) -> Result<(), Rejection> {
    let mut serializer = serde_json::Serializer::with_formatter(std::io::sink(), DepthLimit { depth: 0, max });
    match state.serialize(&mut serializer) {
        Ok(()) => Ok(()),
        Err(e) if e.is_io() => Err(too_deep(max + 1)),
        // A state that cannot be serialized at all is the model's bug, not a matter of depth.
        Err(e) => Err(Rejection::new(
            "INVALID_STATE",
            format!("the state does not serialize: {e}"),
        )),
    }
}

/// A JSON formatter that writes nothing and fails past `max` levels.
struct DepthLimit {
    depth: usize,
    max: usize,
}

impl DepthLimit {
    fn open(&mut self) -> std::io::Result<()> {
        self.depth += 1;
        if self.depth > self.max {
            Err(std::io::Error::other("too deep"))
        } else {
            Ok(())
        }
    }
}

impl serde_json::ser::Formatter for DepthLimit {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.open()
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        Ok(())
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.open()
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.depth -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([])), 1);
        assert_eq!(json_depth(&json!({ "a": [1, { "b": [] }] })), 4);
        assert_eq!(json_depth(&nested(64)), 64);
    }

    #[test]
    fn serialized_depth_stops_at_the_bound() {
        assert!(check_state_depth(&nested(64), MAX_DEPTH).is_ok());
        assert_eq!(check_state_depth(&nested(65), MAX_DEPTH).unwrap_err().code, TOO_DEEP);
        assert_eq!(check_state_depth(&vec![vec![1u8]], 1).unwrap_err().code, TOO_DEEP);
        assert!(check_state_depth(&vec![vec![1u8]], 2).is_ok());
    }

    #[test]
    fn a_value_deeper_than_the_stack_is_measured() {
        // Built and taken apart without recursion: dropping it whole would overflow the stack.
        let mut v = Value::Null;
        for _ in 0..200_000 {
            v = Value::Array(vec![v]);
        }
        assert_eq!(json_depth(&v), 200_000);
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }
}
