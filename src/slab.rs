//! [`Slab`]: the table of an event loop's connections, addressed by
//! [`SlotKey`] (index and generation).
//!
//! Owns only storage and the generation rule: a slot's generation changes every
//! time it is freed, so a key that outlived its connection (a late poller
//! event, a stale handle) never reaches the connection that reused the slot.
//! Storage grows in fixed pages, so it never holds more than one page of slack.

const PAGE: usize = 256;

/// The address of a value in a [`Slab`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SlotKey {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl SlotKey {
    /// Packs the key into a poller token.
    pub(crate) fn token(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Unpacks a poller token.
    pub(crate) fn from_token(token: u64) -> Self {
        Self {
            index: token as u32,
            generation: (token >> 32) as u32,
        }
    }
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

pub(crate) struct Slab<T> {
    pages: Vec<Vec<Slot<T>>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Self {
            pages: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        self.pages.get(index / PAGE)?.get(index % PAGE)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<T>> {
        let index = index as usize;
        self.pages.get_mut(index / PAGE)?.get_mut(index % PAGE)
    }

    /// Stores `value`; `None` only if 2^32 slots are in use.
    pub(crate) fn insert(&mut self, value: T) -> Option<SlotKey> {
        if let Some(index) = self.free.pop() {
            let slot = self.slot_mut(index)?;
            slot.value = Some(value);
            let generation = slot.generation;
            self.len += 1;
            return Some(SlotKey { index, generation });
        }
        let total = self.pages.len() * PAGE;
        let index =
            u32::try_from(self.pages.last().map_or(total, |p| total - PAGE + p.len())).ok()?;
        if self.pages.last().map_or(true, |p| p.len() == PAGE) {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        let page = self.pages.last_mut()?;
        page.push(Slot {
            generation: 0,
            value: Some(value),
        });
        self.len += 1;
        Some(SlotKey {
            index,
            generation: 0,
        })
    }

    pub(crate) fn get(&self, key: SlotKey) -> Option<&T> {
        let slot = self.slot(key.index)?;
        if slot.generation == key.generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    pub(crate) fn get_mut(&mut self, key: SlotKey) -> Option<&mut T> {
        let slot = self.slot_mut(key.index)?;
        if slot.generation == key.generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    /// Frees the slot, so that `key` and every copy of it go stale.
    pub(crate) fn remove(&mut self, key: SlotKey) -> Option<T> {
        let slot = self.slot_mut(key.index)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Keys of every stored value.
    pub(crate) fn keys(&self) -> Vec<SlotKey> {
        let mut keys = Vec::with_capacity(self.len);
        for (p, page) in self.pages.iter().enumerate() {
            for (i, slot) in page.iter().enumerate() {
                if slot.value.is_some() {
                    keys.push(SlotKey {
                        index: (p * PAGE + i) as u32,
                        generation: slot.generation,
                    });
                }
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_never_reach_a_reused_slot() {
        let mut slab = Slab::new();
        let a = slab.insert("a").unwrap();
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert("b").unwrap();
        assert_eq!(a.index, b.index, "the slot is reused");
        assert_ne!(a.generation, b.generation);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(SlotKey::from_token(b.token()), b);
    }

    #[test]
    fn grows_by_pages_and_lists_keys() {
        let mut slab = Slab::new();
        let keys: Vec<_> = (0..1000).map(|i| slab.insert(i).unwrap()).collect();
        assert_eq!(slab.keys().len(), 1000);
        assert_eq!(slab.pages.len(), 4);
        for k in keys.iter().step_by(2) {
            slab.remove(*k);
        }
        assert_eq!(slab.keys().len(), 500);
        for (i, k) in keys.iter().enumerate().skip(1).step_by(2) {
            assert_eq!(slab.get(*k), Some(&i));
        }
    }
}
