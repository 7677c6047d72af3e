//! A bounded set of recently seen keys: Meta delivers webhooks at least once and retries for
//! days, so the same message or status may arrive again (even concurrently).

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::fast::RandomState;

/// Keys are kept as 128-bit fingerprints (two independently seeded 64-bit hashes): no allocation
/// per webhook and a fixed 16 bytes per table slot plus 16 per remembered key. Two different
/// keys share a fingerprint with a probability of about n²/2¹²⁹ (10⁻²⁹ for the default 100 000
/// keys).
pub struct Dedupe {
    capacity: usize,
    hashers: (RandomState, RandomState),
    state: Mutex<Window>,
}

/// The fingerprints in an open-addressing table with linear probing, and their insertion order
/// for eviction. A general hash set touched three or four cache lines per new key (its control
/// bytes and its slots live apart, once for the insert and once for evicting the oldest key);
/// with the default window far larger than the cache, each was a miss and together they cost
/// as much as the webhook's HMAC. Here a key and its probe sequence share a cache line, so a new
/// key costs about two misses: its slot and the evicted key's.
struct Window {
    /// 0 is an empty slot (a fingerprint of 0 is stored as 1); never more than half full.
    slots: Vec<u128>,
    order: VecDeque<u128>,
}

impl Window {
    const FIRST_SIZE: usize = 1024;

    fn home(&self, fingerprint: u128) -> usize {
        (fingerprint as usize) & (self.slots.len() - 1)
    }

    /// Where `fingerprint` is along its probe run, or the empty slot ending the run; and
    /// whether it was found.
    fn probe(&self, fingerprint: u128) -> (usize, bool) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(fingerprint);
        loop {
            match self.slots[i] {
                0 => return (i, false),
                present if present == fingerprint => return (i, true),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Inserts `fingerprint`; false if it was present.
    fn insert(&mut self, fingerprint: u128) -> bool {
        if (self.order.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let (slot, present) = self.probe(fingerprint);
        if present {
            return false;
        }
        self.slots[slot] = fingerprint;
        self.order.push_back(fingerprint);
        true
    }

    /// Removes the oldest fingerprint, closing the gap by shifting later members of its probe
    /// run back (no tombstones, so lookups stay short).
    fn evict_oldest(&mut self) {
        let Some(oldest) = self.order.pop_front() else {
            return;
        };
        let mask = self.slots.len() - 1;
        let (mut hole, _) = self.probe(oldest);
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let moved = self.slots[next];
            if moved == 0 {
                break;
            }
            // `moved` may fill the hole if the hole lies between its home and where it is.
            let home = self.home(moved);
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = moved;
                hole = next;
            }
        }
        self.slots[hole] = 0;
    }

    /// Doubles the table (grown as keys arrive, so a large configured window costs memory
    /// only once it is used).
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(Self::FIRST_SIZE);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for fingerprint in old.into_iter().filter(|f| *f != 0) {
            let (slot, _) = self.probe(fingerprint);
            self.slots[slot] = fingerprint;
        }
    }
}

impl Dedupe {
    /// Remembers at most `capacity` keys; the oldest are forgotten first. 0 disables dedupe.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hashers: (RandomState::default(), RandomState::default()),
            state: Mutex::new(Window {
                slots: Vec::new(),
                order: VecDeque::new(),
            }),
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
        let mut window = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !window.insert(fingerprint.max(1)) {
            return false;
        }
        if window.order.len() > self.capacity {
            window.evict_oldest();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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

    /// Against a plain model (a set and a queue), with keys drawn from a small range so that
    /// repeats, evictions, long probe runs and growth all happen.
    #[test]
    fn behaves_like_a_bounded_fifo_set() {
        for capacity in [1, 3, 17, 600, 5000] {
            let d = Dedupe::new(capacity);
            let (mut set, mut order) = (HashSet::new(), VecDeque::new());
            let mut seed = capacity as u64;
            for _ in 0..40_000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = ((seed >> 33) % (capacity as u64 * 3)).to_string();
                let expected = set.insert(key.clone());
                if expected {
                    order.push_back(key.clone());
                    if order.len() > capacity {
                        set.remove(&order.pop_front().unwrap());
                    }
                }
                assert_eq!(d.first_time(&key), expected, "capacity {capacity}");
            }
            let window = d.state.lock().unwrap();
            assert_eq!(window.order.len(), set.len());
            assert_eq!(window.slots.iter().filter(|f| **f != 0).count(), set.len());
        }
    }
}
