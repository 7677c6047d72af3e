//! A bounded set of recently seen keys: Meta delivers webhooks at least once and retries for
//! days, so the same message or status may arrive again (even concurrently).

use std::hash::BuildHasher;
use std::sync::Mutex;

use foldhash::fast::RandomState;

/// Keys are kept as 128-bit fingerprints (two independently seeded 64-bit hashes): no allocation
/// per webhook and a fixed size per key. Two different keys share a fingerprint with a
/// probability of about n²/2¹²⁹ (10⁻²⁹ for the default 100 000 keys).
pub struct Dedupe {
    capacity: usize,
    hashers: (RandomState, RandomState),
    state: Mutex<Window>,
}

/// The most keys a window holds: a table slot names its key's ring position in 24 bits.
pub const MAX_CAPACITY: usize = (1 << INDEX_BITS) - 1;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The fingerprints in a ring, oldest first, and an open-addressing index over them (linear
/// probing). Each index slot is 8 bytes: 40 low bits of the fingerprint and the ring position
/// plus one (0 = empty). Probing compares those 40 bits and reads the full fingerprint from
/// the ring only when they match (a repeat, or one new key in 2⁴⁰ per slot probed), so the
/// answer stays exact. The default window's index (2 MB) and ring (1.6 MB) are far larger than
/// the cache: every new key misses at its slot and at the evicted key's, and halving the index
/// from 16-byte slots saved about 0.3 µs per webhook on the bench's VM.
struct Window {
    slots: Vec<u64>,
    ring: Vec<u128>,
    /// Ring position of the oldest fingerprint.
    head: usize,
    len: usize,
    capacity: usize,
}

impl Window {
    const FIRST_SIZE: usize = 1024;

    fn new(capacity: usize) -> Self {
        Window {
            slots: Vec::new(),
            ring: Vec::new(),
            head: 0,
            len: 0,
            capacity,
        }
    }

    fn tag(fingerprint: u128) -> u64 {
        (fingerprint as u64) >> INDEX_BITS << INDEX_BITS
    }

    /// Where a slot's key (or `fingerprint`, through its tag) starts probing.
    fn home(&self, tagged: u64) -> usize {
        ((tagged >> INDEX_BITS) as usize) & (self.slots.len() - 1)
    }

    /// The first empty slot of the probe run that starts at `home`.
    fn empty_slot_from(&self, home: usize) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = home;
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        i
    }

    /// Inserts `fingerprint` unless present; false if it was.
    fn insert(&mut self, fingerprint: u128) -> bool {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let tag = Self::tag(fingerprint);
        let mut i = self.home(tag);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                break;
            }
            if slot & !INDEX_MASK == tag
                && self.ring[(slot & INDEX_MASK) as usize - 1] == fingerprint
            {
                return false;
            }
            i = (i + 1) & mask;
        }
        if self.len == self.capacity {
            self.evict_oldest();
            // The eviction may have shifted this probe run: look for the empty slot again.
            i = self.empty_slot_from(self.home(tag));
        }
        let mut position = self.head + self.len;
        if position >= self.capacity {
            position -= self.capacity;
        }
        if position == self.ring.len() {
            self.ring.push(fingerprint);
        } else {
            self.ring[position] = fingerprint;
        }
        self.len += 1;
        self.slots[i] = tag | (position as u64 + 1);
        true
    }

    /// Forgets the oldest fingerprint, closing the gap by shifting later members of its probe
    /// run back (no tombstones, so lookups stay short). The ring is read once, for the oldest
    /// key's home; the slots that move carry theirs in their tag.
    fn evict_oldest(&mut self) {
        if self.len == 0 {
            return;
        }
        let mask = self.slots.len() - 1;
        let oldest = self.head as u64 + 1;
        let mut hole = self.home(Self::tag(self.ring[self.head]));
        while self.slots[hole] & INDEX_MASK != oldest {
            hole = (hole + 1) & mask;
        }
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
        self.head += 1;
        if self.head == self.capacity {
            self.head = 0;
        }
        self.len -= 1;
    }

    /// Doubles the index (grown as keys arrive, so a large configured window costs memory only
    /// once it is used).
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(Self::FIRST_SIZE);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        for slot in old.into_iter().filter(|s| *s != 0) {
            let i = self.empty_slot_from(self.home(slot));
            self.slots[i] = slot;
        }
    }
}

impl Dedupe {
    /// Remembers at most `capacity` keys (at most `MAX_CAPACITY`); the oldest are forgotten
    /// first. 0 disables dedupe.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(MAX_CAPACITY);
        Self {
            capacity,
            hashers: (RandomState::default(), RandomState::default()),
            state: Mutex::new(Window::new(capacity)),
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
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashSet, VecDeque};

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
            assert_eq!(window.len, set.len());
            assert_eq!(window.slots.iter().filter(|f| **f != 0).count(), set.len());
        }
    }

    /// Fingerprints alike in the 40 bits the index keeps are still told apart (the ring holds
    /// them whole), and evicting one leaves the other.
    #[test]
    fn index_tags_alike_do_not_merge_keys() {
        let mut w = Window::new(3);
        let low = 0xABCD_EF01_2345_6789_u128;
        let (a, b, c) = (low | 1 << 64, low | 2 << 64, low | 3 << 64);
        assert!(w.insert(a));
        assert!(w.insert(b));
        assert!(!w.insert(a) && !w.insert(b));
        assert!(w.insert(c));
        assert!(w.insert(7), "a is evicted");
        assert!(!w.insert(b) && !w.insert(c) && !w.insert(7));
        assert!(w.insert(a), "a was forgotten");
        assert_eq!(w.len, 3);
    }

    #[test]
    fn capacity_is_bounded() {
        assert_eq!(Dedupe::new(usize::MAX).capacity(), MAX_CAPACITY);
        assert_eq!(Dedupe::new(10).capacity(), 10);
    }
}
