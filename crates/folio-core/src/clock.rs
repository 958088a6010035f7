//! A hybrid logical clock: physical milliseconds plus a counter.
//!
//! The clock never goes backwards, bumps its counter when two events fall in the same millisecond (the "bump on
//! collision" of folio's original design), and advances past any timestamp it observes from another replica, so an
//! action made after seeing another always sorts after it.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One reading of a [`HybridClock`]. Ordered by milliseconds, then counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct HlcTimestamp {
    /// Milliseconds since the Unix epoch (physical part).
    pub millis: u64,
    /// Logical counter within the millisecond.
    pub counter: u32,
}

impl HlcTimestamp {
    /// A timestamp.
    pub fn new(millis: u64, counter: u32) -> Self {
        Self { millis, counter }
    }
}

/// The source of physical time for a [`HybridClock`]; replaceable in tests.
pub type PhysicalClock = Box<dyn Fn() -> u64 + Send + Sync>;

/// A hybrid logical clock for one replica. Cheap to share behind an `Arc`.
pub struct HybridClock {
    last: Mutex<HlcTimestamp>,
    physical: PhysicalClock,
}

impl std::fmt::Debug for HybridClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridClock")
            .field("last", &*self.last.lock().unwrap_or_else(|e| e.into_inner()))
            .finish()
    }
}

impl Default for HybridClock {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl HybridClock {
    /// A clock on the system's wall time.
    pub fn new() -> Self {
        Self::with_physical(Box::new(system_millis))
    }

    /// A clock on a physical time source of the caller's (tests use a fixed or stepped one).
    pub fn with_physical(physical: PhysicalClock) -> Self {
        Self {
            last: Mutex::new(HlcTimestamp::default()),
            physical,
        }
    }

    /// The next timestamp: strictly greater than every timestamp this clock has issued or observed.
    pub fn now(&self) -> HlcTimestamp {
        let physical = (self.physical)();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let next = if physical > last.millis {
            HlcTimestamp::new(physical, 0)
        } else {
            bump(*last)
        };
        *last = next;
        next
    }

    /// Takes in a timestamp seen from another replica, so later local timestamps sort after it.
    pub fn observe(&self, remote: HlcTimestamp) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if remote > *last {
            *last = remote;
        }
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> HlcTimestamp {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn bump(t: HlcTimestamp) -> HlcTimestamp {
    match t.counter.checked_add(1) {
        Some(counter) => HlcTimestamp::new(t.millis, counter),
        // At the very end of time (only reachable by observing an absurd remote timestamp) stay there rather than
        // wrap around to 1970 (release) or panic (debug).
        None => t.millis.checked_add(1).map_or(t, |millis| HlcTimestamp::new(millis, 0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn stepped(start: u64) -> (Arc<AtomicU64>, HybridClock) {
        let t = Arc::new(AtomicU64::new(start));
        let t2 = t.clone();
        (
            t,
            HybridClock::with_physical(Box::new(move || t2.load(Ordering::SeqCst))),
        )
    }

    #[test]
    fn bumps_counter_on_collision() {
        let (_, clock) = stepped(1000);
        assert_eq!(clock.now(), HlcTimestamp::new(1000, 0));
        assert_eq!(clock.now(), HlcTimestamp::new(1000, 1));
        assert_eq!(clock.now(), HlcTimestamp::new(1000, 2));
    }

    #[test]
    fn never_goes_backwards_when_wall_time_does() {
        let (t, clock) = stepped(5000);
        let a = clock.now();
        t.store(4000, Ordering::SeqCst);
        let b = clock.now();
        assert!(b > a, "{b:?} after {a:?}");
        t.store(6000, Ordering::SeqCst);
        assert_eq!(clock.now(), HlcTimestamp::new(6000, 0));
    }

    #[test]
    fn advances_past_observed_timestamps() {
        let (_, clock) = stepped(1000);
        clock.observe(HlcTimestamp::new(9000, 7));
        assert_eq!(clock.now(), HlcTimestamp::new(9000, 8));
        clock.observe(HlcTimestamp::new(10, 0));
        assert_eq!(clock.now(), HlcTimestamp::new(9000, 9));
    }

    #[test]
    fn the_largest_timestamp_does_not_wrap() {
        let (_, clock) = stepped(1);
        clock.observe(HlcTimestamp::new(u64::MAX, u32::MAX));
        assert_eq!(clock.now(), HlcTimestamp::new(u64::MAX, u32::MAX));
    }

    #[test]
    fn counter_overflow_moves_to_next_millisecond() {
        let (_, clock) = stepped(1);
        clock.observe(HlcTimestamp::new(1, u32::MAX));
        assert_eq!(clock.now(), HlcTimestamp::new(2, 0));
    }
}
