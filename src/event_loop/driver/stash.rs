//! [`Stash`]: a connection's completions waiting for the loop, oldest
//! first, in a queue that costs an idle connection one pointer.
//!
//! The completion driver keeps one per attached connection, and an idle
//! connection is the common case at scale (issue 14: at most 256 bytes of
//! memory per idle connection, everything included). So the queue is a
//! boxed `VecDeque` that exists only while something waits, and the boxes
//! of drained stashes go to the driver's [`Spares`] for the next one:
//! a busy loop stashes and takes completions without allocating, and an
//! idle connection holds no heap memory for it.
//!
//! Owns only the items; never looks inside them.

// The boxes are the point: a connection's record holds one pointer, and
// whole boxes move between stashes and the spares.
#![allow(clippy::box_collection, clippy::vec_box)]

use std::collections::VecDeque;

/// Most drained queues a driver keeps for reuse (each holds the capacity
/// its busiest use gave it, a few items as a rule).
const SPARES: usize = 256;

/// Drained queues, reused by the next stash that receives something.
pub(super) struct Spares<T>(Vec<Box<VecDeque<T>>>);

impl<T> Spares<T> {
    pub(super) const fn new() -> Self {
        Spares(Vec::new())
    }

    fn take(&mut self) -> Box<VecDeque<T>> {
        self.0.pop().unwrap_or_default()
    }

    fn give(&mut self, queue: Box<VecDeque<T>>) {
        debug_assert!(queue.is_empty());
        if self.0.len() < SPARES {
            self.0.push(queue);
        }
    }
}

pub(super) struct Stash<T> {
    /// The items, oldest first (`None`: none). Boxed on purpose: one
    /// pointer in every connection's record instead of a `VecDeque`'s
    /// four words, for items most connections hold only for a moment.
    items: Option<Box<VecDeque<T>>>,
}

impl<T> Stash<T> {
    pub(super) const fn new() -> Self {
        Stash { items: None }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_none()
    }

    pub(super) fn len(&self) -> usize {
        self.items.as_ref().map_or(0, |q| q.len())
    }

    /// The newest item.
    pub(super) fn back(&self) -> Option<&T> {
        self.items.as_ref().and_then(|q| q.back())
    }

    pub(super) fn push_back(&mut self, item: T, spares: &mut Spares<T>) {
        self.items
            .get_or_insert_with(|| spares.take())
            .push_back(item);
    }

    pub(super) fn pop_front(&mut self, spares: &mut Spares<T>) -> Option<T> {
        let queue = self.items.as_mut()?;
        let item = queue.pop_front();
        if queue.is_empty() {
            if let Some(queue) = self.items.take() {
                spares.give(queue);
            }
        }
        item
    }

    /// The items, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().flat_map(|q| q.iter())
    }

    /// Keeps only the items `keep` accepts, in order (the others are
    /// dropped here), and gives the queue back if it empties.
    pub(super) fn retain(&mut self, keep: impl FnMut(&T) -> bool, spares: &mut Spares<T>) {
        let Some(queue) = self.items.as_mut() else {
            return;
        };
        queue.retain(keep);
        if queue.is_empty() {
            if let Some(queue) = self.items.take() {
                spares.give(queue);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stash_is_one_pointer() {
        // Part of the idle-connection budget (see `driver::uring`'s size test).
        assert_eq!(
            std::mem::size_of::<Stash<u64>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn keeps_order_and_reuses_drained_queues() {
        let mut spares = Spares::new();
        let mut s = Stash::new();
        assert!(s.is_empty() && s.back().is_none());
        s.push_back(1, &mut spares);
        s.push_back(2, &mut spares);
        s.push_back(3, &mut spares);
        assert_eq!((s.len(), s.back()), (3, Some(&3)));
        assert_eq!(s.pop_front(&mut spares), Some(1));
        assert_eq!(s.pop_front(&mut spares), Some(2));
        s.push_back(4, &mut spares);
        assert_eq!(s.pop_front(&mut spares), Some(3));
        assert_eq!(s.pop_front(&mut spares), Some(4));
        assert!(s.is_empty() && s.items.is_none(), "drained: no heap held");
        assert_eq!(spares.0.len(), 1, "the drained queue is kept for reuse");
        let kept = spares.0[0].capacity();
        s.push_back(5, &mut spares);
        assert!(spares.0.is_empty(), "the next stash reuses it");
        assert_eq!(s.items.as_ref().map(|q| q.capacity()), Some(kept));
        assert_eq!(s.pop_front(&mut spares), Some(5));
        assert_eq!(s.pop_front(&mut spares), None);
    }

    #[test]
    fn retain_keeps_order_and_gives_back_an_emptied_queue() {
        let mut spares = Spares::new();
        let mut s = Stash::new();
        for i in 1..=5 {
            s.push_back(i, &mut spares);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        s.retain(|&i| i % 2 == 0, &mut spares);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [2, 4]);
        s.retain(|_| false, &mut spares);
        assert!(s.is_empty() && s.items.is_none());
        assert_eq!(spares.0.len(), 1);
    }
}
