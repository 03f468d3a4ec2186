//! [`Stash`]: a connection's completions waiting for the loop, oldest
//! first, in a queue that holds no heap memory while at most one waits.
//!
//! The completion driver keeps one per attached connection, and an idle
//! connection is the common case at scale: a `VecDeque` would keep the
//! allocation its first completion made (~150 bytes with the allocator's
//! overhead) for the connection's whole life. Here the oldest item sits
//! inline and only a backlog of two or more uses the heap (boxed, so an
//! idle connection pays one pointer for it), which is given back as soon
//! as the backlog drains.
//!
//! Owns only the items; never looks inside them.

use std::collections::VecDeque;

pub(super) struct Stash<T> {
    /// The oldest item (`None` only when the stash is empty).
    first: Option<T>,
    /// The items after `first`, in order (`None`: none). Boxed on purpose:
    /// one pointer in every connection's record instead of a `VecDeque`'s
    /// four words, for a backlog most connections never have.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<T>>>,
}

impl<T> Stash<T> {
    pub(super) const fn new() -> Self {
        Stash {
            first: None,
            rest: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    /// The newest item.
    pub(super) fn back(&self) -> Option<&T> {
        self.rest
            .as_ref()
            .and_then(|r| r.back())
            .or(self.first.as_ref())
    }

    pub(super) fn push_back(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(item);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let item = self.first.take()?;
        if let Some(rest) = self.rest.as_mut() {
            self.first = rest.pop_front();
            if rest.is_empty() {
                // The backlog drained: give its memory back.
                self.rest = None;
            }
        }
        Some(item)
    }

    /// The items, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    /// Keeps only the items `keep` accepts, in order (the others are
    /// dropped here), and frees the backlog if it empties.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut kept = Stash::new();
        while let Some(item) = self.pop_front() {
            if keep(&item) {
                kept.push_back(item);
            }
        }
        *self = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stash_is_small() {
        // The oldest item inline and a pointer for the backlog.
        assert_eq!(
            std::mem::size_of::<Stash<u64>>(),
            std::mem::size_of::<Option<u64>>() + std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn keeps_order_and_frees_the_backlog_once_drained() {
        let mut s = Stash::new();
        assert!(s.is_empty() && s.back().is_none());
        s.push_back(1);
        assert!(s.rest.is_none(), "one item needs no heap");
        s.push_back(2);
        s.push_back(3);
        assert_eq!((s.len(), s.back()), (3, Some(&3)));
        assert_eq!(s.pop_front(), Some(1));
        assert_eq!(s.pop_front(), Some(2));
        assert!(s.rest.is_none(), "drained backlog freed");
        s.push_back(4);
        assert_eq!(s.pop_front(), Some(3));
        assert_eq!(s.pop_front(), Some(4));
        assert_eq!(s.pop_front(), None);
        assert!(s.is_empty());
    }

    #[test]
    fn retain_keeps_order_and_the_first_item_inline() {
        let mut s = Stash::new();
        for i in 1..=5 {
            s.push_back(i);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        s.retain(|&i| i % 2 == 0);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [2, 4]);
        assert_eq!(s.first, Some(2));
        s.retain(|_| false);
        assert!(s.is_empty() && s.rest.is_none());
    }
}
