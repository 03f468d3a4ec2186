//! [`Slab`]: a table of values addressed by [`SlotKey`] (index and
//! generation); in ringloop, an event loop's connections.
//!
//! Owns only storage and the generation rule: a slot's generation changes every
//! time it is freed, so a key that outlived its value (a late poller event, a
//! stale connection handle arriving through a mailbox) never reaches the value
//! that reused the slot. `tests/loom_generation.rs` checks that rule against a
//! concurrent sender. Storage grows in fixed pages (of 256 slots), so it
//! never holds more than one page of slack. It is owned by one thread and has no atomics.
//!
//! **Marks.** A caller may *mark* a value it has checked (see
//! [`Slab::get_mut_vouched`]); the mark stays valid until any value of the
//! slab is next reached mutably — through [`Slab::get_mut`], an insert, a
//! remove or [`Slab::void_marks`] — so a valid mark means that no value has
//! changed since (the one exception, [`Slab::get_mut_keeping_marks`], is
//! for a change the caller knows leaves what it checked as it was). An event
//! loop uses a mark to skip re-checking that a connection is quiet.

const PAGE: usize = 256;

/// The address of a value in a [`Slab`]: the slot's index and its generation
/// when the value was inserted.
///
/// ```
/// use ringloop_actors::slab::Slab;
/// let mut slab = Slab::new();
/// let key = slab.insert("a").unwrap();
/// slab.remove(key);
/// let again = slab.insert("b").unwrap(); // same slot, new generation
/// assert_eq!(again.index, key.index);
/// assert_ne!(again.generation, key.generation);
/// assert_eq!(slab.get(key), None); // the old key is stale
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlotKey {
    /// The slot.
    pub index: u32,
    /// The slot's generation when the value was stored.
    pub generation: u32,
}

impl SlotKey {
    /// Packs the key into a `u64` (a poller token).
    ///
    /// ```
    /// use ringloop_actors::slab::SlotKey;
    /// let key = SlotKey { index: 7, generation: 3 };
    /// assert_eq!(SlotKey::from_token(key.token()), key);
    /// ```
    pub fn token(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Unpacks a key packed by [`token`](Self::token).
    ///
    /// ```
    /// use ringloop_actors::slab::{Slab, SlotKey};
    /// let mut slab = Slab::new();
    /// let key = slab.insert(42).unwrap();
    /// let token = key.token(); // e.g. stored as an epoll event's data
    /// assert_eq!(slab.get(SlotKey::from_token(token)), Some(&42));
    /// ```
    pub fn from_token(token: u64) -> Self {
        Self {
            index: token as u32,
            generation: (token >> 32) as u32,
        }
    }
}

/// A page of empty slots.
fn new_page<T>() -> Box<[Slot<T>; PAGE]> {
    let slots: Box<[Slot<T>]> = (0..PAGE)
        .map(|_| Slot {
            generation: 0,
            mark: 0,
            value: None,
        })
        .collect();
    match slots.try_into() {
        Ok(page) => page,
        Err(_) => unreachable!("a page is made of PAGE slots"),
    }
}

struct Slot<T> {
    generation: u32,
    /// The slab's `epoch` when the value was last marked (0: never).
    mark: u32,
    value: Option<T>,
}

/// A generational table (see the module docs).
///
/// ```
/// use ringloop_actors::slab::Slab;
/// let mut slab = Slab::new();
/// let old = slab.insert("first").unwrap();
/// slab.remove(old);
/// let new = slab.insert("second").unwrap();
/// assert_eq!(old.index, new.index); // the slot is reused...
/// assert_eq!(slab.get(old), None); // ...but the stale key misses it
/// assert_eq!(slab.get(new), Some(&"second"));
/// ```
pub struct Slab<T> {
    /// Fixed-size pages (the size is in the type: a slot's lookup checks
    /// only which page).
    pages: Vec<Box<[Slot<T>; PAGE]>>,
    /// Slots handed out so far (all below it are in use or free).
    used: usize,
    free: Vec<u32>,
    len: usize,
    /// Changes whenever a value may have changed (see "Marks"); never 0.
    epoch: u32,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Slab<T> {
    /// An empty table (no allocation until the first insert).
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let slab: Slab<String> = Slab::new();
    /// assert!(slab.is_empty());
    /// ```
    pub fn new() -> Self {
        Self {
            pages: Vec::new(),
            used: 0,
            free: Vec::new(),
            len: 0,
            epoch: 1,
        }
    }

    #[inline]
    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        let page = self.pages.get(index / PAGE)?;
        Some(&page[index % PAGE])
    }

    #[inline]
    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<T>> {
        let index = index as usize;
        let page = self.pages.get_mut(index / PAGE)?;
        Some(&mut page[index % PAGE])
    }

    /// Stores `value`; `None` only if 2^32 slots are in use.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert("conn").unwrap();
    /// assert_eq!(slab.get(key), Some(&"conn"));
    /// ```
    pub fn insert(&mut self, value: T) -> Option<SlotKey> {
        self.void_marks();
        if let Some(index) = self.free.pop() {
            let slot = self.slot_mut(index)?;
            slot.value = Some(value);
            let generation = slot.generation;
            self.len += 1;
            return Some(SlotKey { index, generation });
        }
        let index = u32::try_from(self.used).ok()?;
        if self.used == self.pages.len() * PAGE {
            self.pages.push(new_page());
        }
        self.slot_mut(index)?.value = Some(value);
        self.used += 1;
        self.len += 1;
        Some(SlotKey {
            index,
            generation: 0,
        })
    }

    /// The value at `key`, if `key` is not stale.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert(1).unwrap();
    /// assert_eq!(slab.get(key), Some(&1));
    /// slab.remove(key);
    /// assert_eq!(slab.get(key), None);
    /// ```
    #[inline]
    pub fn get(&self, key: SlotKey) -> Option<&T> {
        let slot = self.slot(key.index)?;
        if slot.generation == key.generation {
            slot.value.as_ref()
        } else {
            None
        }
    }

    /// The value at `key`, mutably, if `key` is not stale.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert(1).unwrap();
    /// *slab.get_mut(key).unwrap() += 1;
    /// assert_eq!(slab.get(key), Some(&2));
    /// ```
    #[inline]
    pub fn get_mut(&mut self, key: SlotKey) -> Option<&mut T> {
        self.void_marks();
        self.get_mut_keeping_marks(key)
    }

    /// [`get_mut`](Self::get_mut) for a change that leaves whatever the
    /// slab's marks vouch for as it was (so they stay valid); a caller
    /// whose change turns out otherwise calls [`void_marks`](Self::void_marks).
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert(vec![1]).unwrap();
    /// let _ = slab.get_mut_vouched(key, |v| v.len() == 1); // marked
    /// slab.get_mut_keeping_marks(key).unwrap()[0] = 2; // the length is kept
    /// assert_eq!(slab.get_mut_vouched(key, |_| false).map(|(_, m)| m), Some(true));
    /// ```
    #[inline]
    pub fn get_mut_keeping_marks(&mut self, key: SlotKey) -> Option<&mut T> {
        let slot = self.slot_mut(key.index)?;
        if slot.generation == key.generation {
            slot.value.as_mut()
        } else {
            None
        }
    }

    /// The value at `key` mutably (keeping marks, as
    /// [`get_mut_keeping_marks`](Self::get_mut_keeping_marks)), and whether
    /// it is vouched for: it carries a valid mark (see "Marks" in the
    /// module doc), or else `vouch` approves it now, which marks it.
    /// `None` if `key` is stale.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert(0).unwrap();
    /// let even = |v: &i32| v % 2 == 0;
    /// assert_eq!(slab.get_mut_vouched(key, even).map(|(_, m)| m), Some(true));
    /// // Marked: not asked again while nothing is reached mutably.
    /// assert_eq!(slab.get_mut_vouched(key, |_| unreachable!()).map(|(_, m)| m), Some(true));
    /// *slab.get_mut(key).unwrap() = 1; // voids every mark
    /// assert_eq!(slab.get_mut_vouched(key, even).map(|(_, m)| m), Some(false));
    /// ```
    #[inline]
    pub fn get_mut_vouched(
        &mut self,
        key: SlotKey,
        vouch: impl FnOnce(&T) -> bool,
    ) -> Option<(&mut T, bool)> {
        let epoch = self.epoch;
        let Slot {
            generation,
            mark,
            value,
        } = self.slot_mut(key.index)?;
        if *generation != key.generation {
            return None;
        }
        let value = value.as_mut()?;
        if *mark == epoch {
            return Some((value, true));
        }
        let vouched = vouch(value);
        if vouched {
            *mark = epoch;
        }
        Some((value, vouched))
    }

    /// Voids every mark (see "Marks" in the module doc): a value may have
    /// changed.
    #[inline]
    pub fn void_marks(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.restart_marks();
        }
    }

    /// The epoch wrapped around: clear every mark, so that none made 2^32
    /// epochs ago passes for a valid one.
    #[cold]
    fn restart_marks(&mut self) {
        for slot in self.pages.iter_mut().flat_map(|page| page.iter_mut()) {
            slot.mark = 0;
        }
        self.epoch = 1;
    }

    /// Frees the slot, so that `key` and every copy of it go stale.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert("x").unwrap();
    /// assert_eq!(slab.remove(key), Some("x"));
    /// assert_eq!(slab.remove(key), None); // already gone
    /// ```
    pub fn remove(&mut self, key: SlotKey) -> Option<T> {
        self.void_marks();
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

    /// Number of stored values.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// slab.insert(1).unwrap();
    /// slab.insert(2).unwrap();
    /// assert_eq!(slab.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if nothing is stored.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let key = slab.insert(()).unwrap();
    /// assert!(!slab.is_empty());
    /// slab.remove(key);
    /// assert!(slab.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys of every stored value.
    ///
    /// ```
    /// use ringloop_actors::slab::Slab;
    /// let mut slab = Slab::new();
    /// let a = slab.insert('a').unwrap();
    /// let b = slab.insert('b').unwrap();
    /// let mut keys = slab.keys();
    /// keys.sort_by_key(|k| k.index);
    /// assert_eq!(keys, [a, b]);
    /// ```
    pub fn keys(&self) -> Vec<SlotKey> {
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
    fn a_mark_lasts_until_any_value_is_reached_mutably() {
        let mut slab = Slab::new();
        let a = slab.insert(0).unwrap();
        let b = slab.insert(0).unwrap();
        let marked = |slab: &mut Slab<i32>, k| slab.get_mut_vouched(k, |_| false).unwrap().1;
        let mark = |slab: &mut Slab<i32>, k| assert!(slab.get_mut_vouched(k, |_| true).unwrap().1);
        assert!(!marked(&mut slab, a), "a new value carries no mark");
        mark(&mut slab, a);
        assert!(marked(&mut slab, a));
        // Reading, and changes vouched to keep what was checked, keep it.
        let _ = slab.get(b);
        *slab.get_mut_keeping_marks(b).unwrap() += 1;
        assert!(marked(&mut slab, a));
        // Anything else voids every mark, on any value.
        let voiders: [fn(&mut Slab<i32>, SlotKey, SlotKey); 4] = [
            |s, _, b| *s.get_mut(b).unwrap() += 1,
            |s, _, _| {
                s.insert(7).unwrap();
            },
            |s, _, b| {
                s.remove(b).unwrap();
            },
            |s, _, _| s.void_marks(),
        ];
        for (i, void) in voiders.iter().enumerate() {
            mark(&mut slab, a);
            void(&mut slab, a, b);
            assert!(!marked(&mut slab, a), "change {i} kept the mark");
        }
        // A stale key reaches nothing, marked or not.
        assert!(slab.get_mut_vouched(b, |_| true).is_none());
    }

    #[test]
    fn marks_survive_no_epoch_wrap_around() {
        let mut slab = Slab::new();
        let a = slab.insert(0).unwrap();
        assert!(slab.get_mut_vouched(a, |_| true).unwrap().1);
        let marked_at = slab.epoch;
        // 2^32 voids later the epoch is back where the mark was made: the
        // wrap clears the marks instead.
        slab.epoch = u32::MAX;
        slab.void_marks();
        assert_eq!(slab.epoch, 1);
        for _ in 1..marked_at {
            slab.void_marks();
        }
        assert_eq!(slab.epoch, marked_at);
        assert!(!slab.get_mut_vouched(a, |_| false).unwrap().1);
    }

    #[test]
    fn grows_by_pages_and_lists_keys() {
        let mut slab = Slab::new();
        let keys: Vec<_> = (0..1000).map(|i| slab.insert(i).unwrap()).collect();
        assert_eq!(slab.len(), 1000);
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
