//! [`ByteCounts`]: a counting table for byte-string keys, for map functions that count (word
//! count, n-grams, histograms) over a [`Block`](crate::Block) before emitting.
//!
//! Counting in the map's own table and emitting each distinct key once per block turns
//! hundreds of millions of `emit` calls into a few per distinct key, and this table is made
//! for that one job: open addressing with linear probing, keys of up to 16 bytes held inline
//! in the slot as one `u128` (so a probe compares two integers and a length, with no call to
//! `memcmp` and no pointer to follow), longer keys borrowed from the input. A general
//! `HashMap<&[u8], u64>` pays a byte-wise hash, a slice comparison and a pointer chase per
//! lookup; on word-count input that is most of the time spent.

/// Keys this long or shorter live in the slot itself.
const INLINE: usize = 16;

/// One table slot. `len == u32::MAX` marks an empty slot.
#[derive(Clone, Copy)]
struct Slot {
    /// Inline keys: their bytes, zero-padded. Longer keys: their hash, little-endian.
    key: [u8; INLINE],
    /// The key's length.
    len: u32,
    /// Longer keys: index into `long`.
    long: u32,
    count: u64,
}

const EMPTY: Slot = Slot { key: [0; INLINE], len: u32::MAX, long: 0, count: 0 };

/// Counts of byte-string keys; keys longer than 16 bytes are borrowed for `'a` (the block).
///
/// ```
/// let mut counts = quern_api::ByteCounts::new();
/// for word in "the cat and the hat".split(' ') {
///     counts.add(word.as_bytes(), 1);
/// }
/// let mut all: Vec<(Vec<u8>, u64)> = counts.iter().map(|(k, n)| (k.to_vec(), n)).collect();
/// all.sort();
/// assert_eq!(all[3], (b"the".to_vec(), 2));
/// ```
pub struct ByteCounts<'a> {
    slots: Vec<Slot>,
    /// `64 - log2(slots.len())`: the hash's top bits pick the slot.
    shift: u32,
    used: usize,
    long: Vec<&'a [u8]>,
}

impl Default for ByteCounts<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> ByteCounts<'a> {
    /// An empty table.
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// An empty table that holds `n` keys before it grows.
    pub fn with_capacity(n: usize) -> Self {
        // At most half full: linear probing stays short.
        let size = (n.max(8) * 2).next_power_of_two();
        ByteCounts { slots: vec![EMPTY; size], shift: 64 - size.trailing_zeros(), used: 0, long: Vec::new() }
    }

    /// Distinct keys counted.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no key was counted.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Adds `n` to `key`'s count.
    #[inline]
    pub fn add(&mut self, key: &'a [u8], n: u64) {
        if key.len() <= INLINE {
            let mut b = [0u8; INLINE];
            b[..key.len()].copy_from_slice(key);
            self.add_inline(u128::from_le_bytes(b), key.len(), n);
        } else {
            self.add_long(key, n);
        }
    }

    /// [`ByteCounts::add`] for a key at `at` in `bytes`: a key there with 16 readable bytes
    /// after its start is loaded with one unaligned read instead of a copy.
    ///
    /// # Panics
    /// If `at..at + len` is not within `bytes`.
    #[inline]
    pub fn add_at(&mut self, bytes: &'a [u8], at: usize, len: usize, n: u64) {
        match bytes.get(at..at + INLINE) {
            Some(window) if len <= INLINE => {
                let word = u128::from_le_bytes(window.try_into().unwrap_or([0; INLINE]));
                let mask = if len == INLINE { u128::MAX } else { (1u128 << (len * 8)) - 1 };
                self.add_inline(word & mask, len, n);
            }
            _ => self.add(&bytes[at..at + len], n),
        }
    }

    #[inline]
    fn add_inline(&mut self, word: u128, len: usize, n: u64) {
        let mut i = self.index(mix(word, len));
        loop {
            let s = &mut self.slots[i];
            // The array compares as one 16-byte integer: no call, no loop.
            if s.len == len as u32 && u128::from_le_bytes(s.key) == word {
                s.count += n;
                return;
            }
            if s.len == u32::MAX {
                *s = Slot { key: word.to_le_bytes(), len: len as u32, long: 0, count: n };
                self.inserted();
                return;
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
    }

    fn add_long(&mut self, key: &'a [u8], n: u64) {
        let h = long_hash(key);
        let mut i = self.index(mix(h as u128, key.len()));
        loop {
            let s = self.slots[i];
            if s.len == key.len() as u32 && s.key == (h as u128).to_le_bytes() && self.long[s.long as usize] == key {
                self.slots[i].count += n;
                return;
            }
            if s.len == u32::MAX {
                // Past 4 Gi distinct long keys the index would wrap: a block is far smaller.
                let long = u32::try_from(self.long.len()).unwrap_or(u32::MAX);
                self.long.push(key);
                self.slots[i] = Slot { key: (h as u128).to_le_bytes(), len: key.len() as u32, long, count: n };
                self.inserted();
                return;
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
    }

    #[inline]
    fn index(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    fn inserted(&mut self) {
        self.used += 1;
        if self.used * 2 > self.slots.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let bigger = vec![EMPTY; self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|s| s.len != u32::MAX) {
            let mut i = self.index(mix(u128::from_le_bytes(s.key), s.len as usize));
            while self.slots[i].len != u32::MAX {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// Every key with its count, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.slots.iter().filter(|s| s.len != u32::MAX).map(|s| {
            let len = s.len as usize;
            let key: &[u8] = if len <= INLINE { &s.key[..len] } else { self.long[s.long as usize] };
            (key, s.count)
        })
    }
}

/// A hash of 16 key bytes and the length: one multiply, good in its top bits.
#[inline]
fn mix(word: u128, len: usize) -> u64 {
    let (lo, hi) = (word as u64, (word >> 64) as u64);
    (lo ^ hi.rotate_left(29) ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (hi.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
}

fn long_hash(key: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    h.write(key);
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::ByteCounts;

    /// Against a HashMap: short, exactly 16-byte, long and empty keys, through growth, both
    /// entry points.
    #[test]
    fn counts_what_a_hash_map_counts() {
        let mut text = Vec::new();
        let mut x = 7u64;
        let mut spans = Vec::new();
        for _ in 0..50_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = [0, 1, 3, 8, 15, 16, 17, 40][(x >> 60) as usize % 8];
            let start = text.len();
            for j in 0..len {
                text.push(b'a' + ((x >> (j % 40)) % 3) as u8);
            }
            spans.push((start, len));
            text.push(b' ');
        }
        let mut want: HashMap<&[u8], u64> = HashMap::new();
        let (mut a, mut b) = (ByteCounts::with_capacity(1), ByteCounts::new());
        for (i, &(s, len)) in spans.iter().enumerate() {
            *want.entry(&text[s..s + len]).or_default() += i as u64 % 3;
            a.add(&text[s..s + len], i as u64 % 3);
            b.add_at(&text, s, len, i as u64 % 3);
        }
        for t in [a, b] {
            let got: HashMap<&[u8], u64> = t.iter().collect();
            assert_eq!(got, want);
            assert_eq!(t.len(), want.len());
        }
    }
}
