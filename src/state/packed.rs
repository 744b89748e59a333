//! Pairs of short byte strings back to back in one buffer: how a small
//! hash is kept, as Redis keeps one in a listpack.
//!
//! A hash of a few short fields spent most of its memory on bookkeeping
//! when it lived in a [`ScanMap`](super::db::ScanMap): a hash-table slot,
//! a B-tree slot, two `Bytes` handles and two allocations per field, about
//! 300 bytes for a field and value of 8 bytes each. Here a pair costs its
//! bytes and two length bytes, in one allocation for the whole hash.
//! Lookups walk the buffer, which for at most [`MAX_PAIRS`] pairs of at
//! most [`MAX_ITEM`] bytes is a few cache lines, the trade Redis makes.
//!
//! Pairs keep the order they were first inserted in (a replaced value
//! keeps its place), which is the order Redis answers HGETALL in for a
//! small hash. The order is a function of the log, so every replica has
//! the same one, and a snapshot keeps it.
//!
//! Layout: for each pair, `field length u8 | field | value length u8 |
//! value`.

/// The longest field or value a packed buffer takes (Redis's
/// `hash-max-listpack-value` default). Longer ones move the hash to a table.
pub const MAX_ITEM: usize = 64;

/// The most pairs a packed buffer takes (Redis's
/// `hash-max-listpack-entries` default).
pub const MAX_PAIRS: usize = 128;

#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedPairs {
    buf: Vec<u8>,
    len: u32,
}

impl std::fmt::Debug for PackedPairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Where one pair lies in the buffer.
struct Slot {
    /// The pair's first byte (its field's length).
    start: usize,
    /// The value's length byte.
    value: usize,
    /// One past the value's last byte.
    end: usize,
}

impl PackedPairs {
    pub fn new() -> Self {
        PackedPairs::default()
    }

    /// True when a pair of these lengths may be kept packed.
    pub fn fits(field: &[u8], value: &[u8]) -> bool {
        field.len() <= MAX_ITEM && value.len() <= MAX_ITEM
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes the pairs take in the buffer: what the hash costs, a
    /// figure of its contents alone, so every replica counts the same.
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes the buffer holds on the heap.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    pub fn iter(&self) -> PackedIter<'_> {
        PackedIter { buf: &self.buf }
    }

    fn find(&self, field: &[u8]) -> Option<Slot> {
        let mut at = 0;
        while at < self.buf.len() {
            let flen = self.buf[at] as usize;
            let value = at + 1 + flen;
            let end = value + 1 + self.buf[value] as usize;
            if &self.buf[at + 1..value] == field {
                return Some(Slot {
                    start: at,
                    value,
                    end,
                });
            }
            at = end;
        }
        None
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        self.find(field).map(|s| &self.buf[s.value + 1..s.end])
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.find(field).is_some()
    }

    /// Sets `field` to `value`, in place when the field exists, else at
    /// the end. True when the field is new. Both must [`fit`](Self::fits).
    pub fn insert(&mut self, field: &[u8], value: &[u8]) -> bool {
        assert!(Self::fits(field, value), "a pair too long to pack");
        match self.find(field) {
            Some(slot) => {
                let old = slot.end - slot.value - 1;
                if old == value.len() {
                    self.buf[slot.value + 1..slot.end].copy_from_slice(value);
                } else {
                    if value.len() > old {
                        self.buf.reserve_exact(value.len() - old);
                    }
                    let bytes = std::iter::once(value.len() as u8).chain(value.iter().copied());
                    self.buf.splice(slot.value..slot.end, bytes);
                    self.trim();
                }
                false
            }
            None => {
                // Exact growth: mimalloc grows a block in place within its
                // size class, and a hash's bytes are all it should hold.
                self.buf.reserve_exact(2 + field.len() + value.len());
                self.buf.push(field.len() as u8);
                self.buf.extend_from_slice(field);
                self.buf.push(value.len() as u8);
                self.buf.extend_from_slice(value);
                self.len += 1;
                true
            }
        }
    }

    /// Removes `field`; true when it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let Some(slot) = self.find(field) else {
            return false;
        };
        self.buf.drain(slot.start..slot.end);
        self.len -= 1;
        self.trim();
        true
    }

    /// Gives back room that removals and shorter values left, once it is
    /// more than a quarter of the buffer.
    fn trim(&mut self) {
        if self.buf.capacity() - self.buf.len() > self.buf.len() / 4 + 16 {
            self.buf.shrink_to_fit();
        }
    }
}

/// The pairs of a [`PackedPairs`], in order.
pub struct PackedIter<'a> {
    buf: &'a [u8],
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&flen, rest) = self.buf.split_first()?;
        let (field, rest) = rest.split_at(flen as usize);
        let (&vlen, rest) = rest
            .split_first()
            .expect("a field is followed by its value");
        let (value, rest) = rest.split_at(vlen as usize);
        self.buf = rest;
        Some((field, value))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Insert(u8, Vec<u8>),
        Remove(u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (
                0u8..12,
                proptest::collection::vec(any::<u8>(), 0..=MAX_ITEM)
            )
                .prop_map(|(f, v)| Step::Insert(f, v)),
            (0u8..12).prop_map(Step::Remove),
        ]
    }

    fn field(f: u8) -> Vec<u8> {
        // Fields of several lengths, one of them empty.
        vec![b'f'; f as usize * 5]
    }

    proptest! {
        /// Against a model: a map of fields to values plus the order fields
        /// were first inserted in.
        #[test]
        fn packed_pairs_behave_as_an_insertion_ordered_map(steps in proptest::collection::vec(step(), 0..80)) {
            let mut packed = PackedPairs::new();
            let mut values = BTreeMap::new();
            let mut order: Vec<Vec<u8>> = Vec::new();
            for s in steps {
                match s {
                    Step::Insert(f, v) => {
                        let f = field(f);
                        let new = values.insert(f.clone(), v.clone()).is_none();
                        if new {
                            order.push(f.clone());
                        }
                        prop_assert_eq!(packed.insert(&f, &v), new);
                    }
                    Step::Remove(f) => {
                        let f = field(f);
                        let was = values.remove(&f).is_some();
                        order.retain(|o| o != &f);
                        prop_assert_eq!(packed.remove(&f), was);
                    }
                }
                prop_assert_eq!(packed.len(), values.len());
                let listed: Vec<(Vec<u8>, Vec<u8>)> =
                    packed.iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect();
                let expected: Vec<(Vec<u8>, Vec<u8>)> =
                    order.iter().map(|f| (f.clone(), values[f].clone())).collect();
                prop_assert_eq!(listed, expected);
                for f in 0..12 {
                    let f = field(f);
                    prop_assert_eq!(packed.get(&f), values.get(&f).map(|v| &v[..]));
                }
                prop_assert!(packed.capacity() <= packed.buf.len() + packed.buf.len() / 4 + 16 + 2 * MAX_ITEM + 2);
            }
        }
    }
}
