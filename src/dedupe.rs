//! A bounded set of recently seen keys: Meta delivers webhooks at least once and retries for
//! days, so the same message or status may arrive again (even concurrently).

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::fast::RandomState;

/// Fingerprints of the keys, and their insertion order for eviction.
type Window = (HashSet<u128, RandomState>, VecDeque<u128>);

/// Keys are kept as 128-bit fingerprints (two independently seeded 64-bit hashes): no allocation
/// per webhook and a fixed 32 bytes or so per remembered key. Two different keys share a
/// fingerprint with a probability of about n²/2¹²⁹ (10⁻²⁹ for the default 100 000 keys).
pub struct Dedupe {
    capacity: usize,
    hashers: (RandomState, RandomState),
    state: Mutex<Window>,
}

impl Dedupe {
    /// Remembers at most `capacity` keys; the oldest are forgotten first. 0 disables dedupe.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hashers: (RandomState::default(), RandomState::default()),
            state: Mutex::new((HashSet::default(), VecDeque::new())),
        }
    }

    /// Fills the window with keys seen before (oldest first), e.g. by a previous process.
    pub fn preload(&self, keys: impl IntoIterator<Item = String>) {
        for key in keys {
            self.first_time(&key);
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records `key` and returns true if it was not seen within the window. Check and insert
    /// are one atomic step, so two concurrent deliveries of one message yield one `true`.
    pub fn first_time(&self, key: &str) -> bool {
        if self.capacity == 0 {
            return true;
        }
        let fingerprint = (u128::from(self.hashers.0.hash_one(key)) << 64)
            | u128::from(self.hashers.1.hash_one(key));
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if !set.insert(fingerprint) {
            return false;
        }
        if order.len() >= self.capacity {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
        order.push_back(fingerprint);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let d = Dedupe::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c"));
        assert!(d.first_time("a"), "a was evicted");
        assert!(!d.first_time("c"));
    }
}
