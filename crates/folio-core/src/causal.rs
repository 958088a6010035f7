//! Causality between replicas: the total order of actions, the author's causal context, and what a reducer may ask
//! about them.
//!
//! * **Total order.** Every action carries its author's hybrid logical clock reading, its replica id and its id;
//!   [`order_key`] sorts by `(millis, counter, replica, id)`, which every replica computes the same way. The
//!   effective history of a sync unit is always sorted by it (sync rebases to keep it so).
//! * **Causal context.** An action also carries [`CausalContext`]: for each *other* replica, the latest clock of that
//!   replica's actions the author had integrated in the unit when it acted (a version vector). Replicas integrate
//!   each origin's actions in the origin's order, so "the author had seen action X" is exactly
//!   `context[X.replica] >= X.clock` (or X is the author's own earlier action): [`ActionMeta::has_seen`].

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::clock::HlcTimestamp;
use crate::operation::Action;

/// The position of an action in the total order every replica agrees on.
pub type OrderKey<'a> = (u64, u32, &'a str, Uuid);

/// The action's position in the total order: clock (millis, counter), then replica id (none sorts first), then id.
pub fn order_key(action: &Action) -> OrderKey<'_> {
    (
        action.timestamp_utc_ms,
        action.counter,
        action.replica.as_deref().unwrap_or(""),
        action.id,
    )
}

/// A version vector: replica id → the latest clock of that replica's actions integrated in a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CausalContext(pub BTreeMap<String, HlcTimestamp>);

impl CausalContext {
    /// An empty context (nothing seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no replica is in it.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The latest clock seen from `replica`.
    pub fn get(&self, replica: &str) -> Option<HlcTimestamp> {
        self.0.get(replica).copied()
    }

    /// Records that `replica`'s action at `at` was integrated.
    pub fn observe(&mut self, replica: &str, at: HlcTimestamp) {
        match self.0.get_mut(replica) {
            Some(seen) => {
                if at > *seen {
                    *seen = at;
                }
            }
            None => {
                self.0.insert(replica.to_owned(), at);
            }
        }
    }

    /// Records `action` (when it names its replica).
    pub fn observe_action(&mut self, action: &Action) {
        if let Some(replica) = &action.replica {
            self.observe(replica, action.timestamp());
        }
    }

    /// The context without `replica` (an action's own replica is implied by its clock).
    pub fn without(&self, replica: &str) -> Self {
        let mut c = self.clone();
        c.0.remove(replica);
        c
    }
}

fn format_stamp(at: HlcTimestamp) -> String {
    format!("{}.{}", at.millis, at.counter)
}

fn parse_stamp(s: &str) -> Option<HlcTimestamp> {
    let (ms, counter) = s.split_once('.')?;
    if ms.is_empty() || ms.len() > 20 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if counter.is_empty() || counter.len() > 10 || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(HlcTimestamp::new(ms.parse().ok()?, counter.parse().ok()?))
}

/// On the wire: `{ "<replica>": "<millis>.<counter>" }`.
impl Serialize for CausalContext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (replica, at) in &self.0 {
            map.serialize_entry(replica, &format_stamp(*at))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for CausalContext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ContextVisitor;
        impl<'de> Visitor<'de> for ContextVisitor {
            type Value = CausalContext;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of replica id to \"<millis>.<counter>\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CausalContext, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((replica, stamp)) = map.next_entry::<String, String>()? {
                    // Characters (code points), as the JSON Schema's maxLength counts them, not bytes.
                    if replica.is_empty() || replica.chars().count() > 64 {
                        return Err(de::Error::custom(
                            "a replica id in a causal context has 1 to 64 characters",
                        ));
                    }
                    let at = parse_stamp(&stamp).ok_or_else(|| {
                        de::Error::custom(format!("causal context clock {stamp:?} is not \"<millis>.<counter>\""))
                    })?;
                    out.insert(replica, at);
                }
                Ok(CausalContext(out))
            }
        }
        d.deserialize_map(ContextVisitor)
    }
}

impl JsonSchema for CausalContext {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CausalContext".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "For each other replica, the latest clock (\"<millis>.<counter>\") of its actions the author had integrated in the unit.",
            "additionalProperties": { "type": "string", "pattern": "^[0-9]{1,20}\\.[0-9]{1,10}$" }
        })
    }
}

/// Who made an action and when, in the compact text form models keep in their state: `<millis>.<counter>@<replica>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The author's clock.
    pub at: HlcTimestamp,
    /// The author.
    pub replica: String,
}

impl Stamp {
    /// The text form.
    pub fn to_text(&self) -> String {
        format!("{}@{}", format_stamp(self.at), self.replica)
    }

    /// Reads the text form.
    pub fn parse(text: &str) -> Option<Self> {
        let (at, replica) = text.split_once('@')?;
        Some(Self {
            at: parse_stamp(at)?,
            replica: replica.to_owned(),
        })
    }
}

/// What a reducer may know about the action it applies: its author, clock and causal context.
#[derive(Debug, Clone, Copy)]
pub struct ActionMeta<'a> {
    /// The author's clock when it acted.
    pub at: HlcTimestamp,
    /// The author, when known.
    pub replica: Option<&'a str>,
    /// What the author had seen of other replicas.
    pub context: &'a CausalContext,
}

static EMPTY: std::sync::LazyLock<CausalContext> = std::sync::LazyLock::new(CausalContext::default);

impl<'a> ActionMeta<'a> {
    /// The metadata of `action`.
    pub fn of(action: &'a Action) -> Self {
        Self {
            at: action.timestamp(),
            replica: action.replica.as_deref(),
            context: &action.context,
        }
    }

    /// Metadata that knows nothing (actions applied outside any replica).
    pub fn unknown() -> ActionMeta<'static> {
        ActionMeta {
            at: HlcTimestamp::default(),
            replica: None,
            context: &EMPTY,
        }
    }

    /// This action's stamp, when its author is known.
    pub fn stamp(&self) -> Option<Stamp> {
        self.replica.map(|r| Stamp {
            at: self.at,
            replica: r.to_owned(),
        })
    }

    /// Whether the author had integrated the action stamped `other` when it acted: its own earlier action, or one
    /// its causal context covers. An unknown author is taken to have seen everything (no concurrency to resolve).
    pub fn has_seen(&self, other: &Stamp) -> bool {
        let Some(me) = self.replica else { return true };
        if me == other.replica {
            return other.at <= self.at;
        }
        self.context.get(&other.replica).is_some_and(|seen| seen >= other.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A replica id in a causal context is 1 to 64 characters, counted as the JSON Schema's `maxLength` counts them
    /// (code points, not bytes): schemathesis sent 64 characters of several bytes each and got 400.
    #[test]
    fn context_replica_ids_are_counted_in_characters() {
        let parse = |key: &str| serde_json::from_value::<CausalContext>(serde_json::json!({ key: "5.1" }));
        assert!(parse(&"é".repeat(64)).is_ok());
        assert!(parse(&"\u{1F600}".repeat(64)).is_ok());
        assert!(parse(&"é".repeat(65)).is_err());
        assert!(parse("").is_err());
    }
}
