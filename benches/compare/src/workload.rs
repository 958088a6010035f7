//! The workloads: deterministic lists of logical updates (fixed seeds), the same for every engine, and the state
//! each must end in.

use std::collections::BTreeMap;

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Many updates over few keys of one map.
    Map,
    /// A todo list: adds, updates and deletes of items.
    Todo,
}

impl WorkloadKind {
    /// Every workload, in table order.
    pub const ALL: [WorkloadKind; 2] = [WorkloadKind::Map, WorkloadKind::Todo];

    /// The name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Map => "map",
            WorkloadKind::Todo => "todo",
        }
    }

    /// The workload named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Sizes of the workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Updates of the map workload.
    pub map_updates: u64,
    /// Distinct keys of the map workload.
    pub map_keys: u64,
    /// Items added by the todo workload.
    pub todo_items: u64,
    /// Updates of the todo workload, adds included.
    pub todo_updates: u64,
}

impl Sizes {
    /// The full comparison: 100,000 updates over 1,000 keys; 10,000 todo items in 40,000 updates.
    pub const FULL: Sizes = Sizes {
        map_updates: 100_000,
        map_keys: 1_000,
        todo_items: 10_000,
        todo_updates: 40_000,
    };
    /// `--quick`: small enough for a smoke test.
    pub const QUICK: Sizes = Sizes {
        map_updates: 2_000,
        map_keys: 100,
        todo_items: 300,
        todo_updates: 1_200,
    };
}

/// One logical update. Each engine applies it as one transaction (folio: one job of one action).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// Map: sets `key` to `value`.
    Set {
        /// The key (`k123`).
        key: String,
        /// The value.
        value: i64,
    },
    /// Todo: adds an item, not done.
    Add {
        /// The item's id (`t42`).
        id: String,
        /// Its title.
        title: String,
    },
    /// Todo: changes an item's title.
    Retitle {
        /// The item's id.
        id: String,
        /// The new title.
        title: String,
    },
    /// Todo: sets an item's done flag.
    SetDone {
        /// The item's id.
        id: String,
        /// The new flag.
        done: bool,
    },
    /// Todo: deletes an item.
    Delete {
        /// The item's id.
        id: String,
    },
}

/// A workload: its updates and the state they lead to.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Which workload.
    pub kind: WorkloadKind,
    /// The updates, in order.
    pub updates: Vec<Update>,
    /// The summary every engine must read back after a build or a load.
    pub expected: Summary,
}

/// An order-independent digest of a state, which every engine computes from what it reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Entries: keys of the map, live items of the todo list.
    pub entries: u64,
    /// Wrapping sum of [`Summary::entry_hash`] over the entries.
    pub fingerprint: u64,
}

impl Summary {
    /// Adds one entry, given as the parts that identify it (`key` and value; id, title and done flag).
    pub fn add(&mut self, parts: &[&[u8]]) {
        self.entries += 1;
        self.fingerprint = self.fingerprint.wrapping_add(Self::entry_hash(parts));
    }

    /// Adds a map entry.
    pub fn add_map_entry(&mut self, key: &str, value: i64) {
        self.add(&[key.as_bytes(), value.to_string().as_bytes()]);
    }

    /// Adds a todo item.
    pub fn add_todo_item(&mut self, id: &str, title: &str, done: bool) {
        self.add(&[id.as_bytes(), title.as_bytes(), if done { b"1" } else { b"0" }]);
    }

    /// FNV-1a over the parts, each followed by a separator byte.
    pub fn entry_hash(parts: &[&[u8]]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for &b in part.iter().chain(std::iter::once(&0xff)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}

/// SplitMix64: a tiny deterministic generator, so the workloads need no dependency and never change.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Seed of the map workload.
pub const MAP_SEED: u64 = 0x666f_6c69_6f2d_6d61;
/// Seed of the todo workload.
pub const TODO_SEED: u64 = 0x666f_6c69_6f2d_7464;

impl Workload {
    /// The workload `kind` at `sizes`.
    pub fn generate(kind: WorkloadKind, sizes: Sizes) -> Self {
        match kind {
            WorkloadKind::Map => Self::map(sizes.map_updates, sizes.map_keys),
            WorkloadKind::Todo => Self::todo(sizes.todo_items, sizes.todo_updates),
        }
    }

    /// `updates` sets of random keys among `keys`; the value of update `n` is `n`.
    pub fn map(updates: u64, keys: u64) -> Self {
        let mut rng = SplitMix64::new(MAP_SEED);
        let mut state = BTreeMap::new();
        let updates: Vec<Update> = (0..updates)
            .map(|n| {
                let key = format!("k{}", rng.below(keys));
                let value = n as i64;
                state.insert(key.clone(), value);
                Update::Set { key, value }
            })
            .collect();
        let mut expected = Summary::default();
        for (key, value) in &state {
            expected.add_map_entry(key, *value);
        }
        Self {
            kind: WorkloadKind::Map,
            updates,
            expected,
        }
    }

    /// `total` updates that add `items` items, spread evenly, and otherwise update (90 %: half retitles, half
    /// done toggles) or delete (10 %) a random live item. Deleted ids are never reused.
    pub fn todo(items: u64, total: u64) -> Self {
        let mut rng = SplitMix64::new(TODO_SEED);
        // Live items: id -> (title, done); `order` holds the live ids for picking one at random.
        let mut live: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut added = 0u64;
        let mut updates = Vec::with_capacity(total as usize);
        for step in 0..total {
            let adds_left = items - added;
            let steps_left = total - step;
            if adds_left > 0 && (order.is_empty() || rng.below(steps_left) < adds_left) {
                let id = format!("t{added}");
                let title = format!("item {added}");
                added += 1;
                live.insert(id.clone(), (title.clone(), false));
                order.push(id.clone());
                updates.push(Update::Add { id, title });
                continue;
            }
            if order.is_empty() {
                break;
            }
            let slot = rng.below(order.len() as u64) as usize;
            let roll = rng.below(100);
            if roll < 10 {
                let id = order.swap_remove(slot);
                live.remove(&id);
                updates.push(Update::Delete { id });
            } else if roll < 55 {
                let id = order[slot].clone();
                let title = format!("item {} v{step}", &id[1..]);
                if let Some(item) = live.get_mut(&id) {
                    item.0.clone_from(&title);
                }
                updates.push(Update::Retitle { id, title });
            } else {
                let id = order[slot].clone();
                let item = live.get_mut(&id).expect("a live id is in the map");
                item.1 = !item.1;
                updates.push(Update::SetDone { id, done: item.1 });
            }
        }
        let mut expected = Summary::default();
        for (id, (title, done)) in &live {
            expected.add_todo_item(id, title, *done);
        }
        Self {
            kind: WorkloadKind::Todo,
            updates,
            expected,
        }
    }

    /// The summary of the state after the first `n` updates, replayed on plain maps (an independent check of the
    /// generators, and the expectation of a load at an earlier revision).
    pub fn summary_after(&self, n: usize) -> Summary {
        let mut map: BTreeMap<&str, i64> = BTreeMap::new();
        let mut todo: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
        for update in self.updates.iter().take(n) {
            match update {
                Update::Set { key, value } => {
                    map.insert(key, *value);
                }
                Update::Add { id, title } => {
                    todo.insert(id, (title, false));
                }
                Update::Retitle { id, title } => {
                    if let Some(item) = todo.get_mut(id.as_str()) {
                        item.0 = title;
                    }
                }
                Update::SetDone { id, done } => {
                    if let Some(item) = todo.get_mut(id.as_str()) {
                        item.1 = *done;
                    }
                }
                Update::Delete { id } => {
                    todo.remove(id.as_str());
                }
            }
        }
        let mut summary = Summary::default();
        for (key, value) in map {
            summary.add_map_entry(key, value);
        }
        for (id, (title, done)) in todo {
            summary.add_todo_item(id, title, done);
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_deterministic_and_complete() {
        let a = Workload::generate(WorkloadKind::Todo, Sizes::QUICK);
        let b = Workload::generate(WorkloadKind::Todo, Sizes::QUICK);
        assert_eq!(a.updates, b.updates);
        assert_eq!(a.updates.len() as u64, Sizes::QUICK.todo_updates);
        let adds = a.updates.iter().filter(|u| matches!(u, Update::Add { .. })).count() as u64;
        assert_eq!(adds, Sizes::QUICK.todo_items);
        let map = Workload::generate(WorkloadKind::Map, Sizes::QUICK);
        assert_eq!(map.expected.entries, Sizes::QUICK.map_keys);
        assert_eq!(map.summary_after(map.updates.len()), map.expected);
        assert_eq!(a.summary_after(a.updates.len()), a.expected);
        assert_ne!(a.summary_after(a.updates.len() - 1), a.expected);
    }
}
