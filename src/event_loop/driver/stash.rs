//! [`Stash`]: a connection's completions waiting for the loop, oldest
//! first, in a queue that holds no heap memory while at most one waits.
//!
//! The completion driver keeps one per attached connection, and an idle
//! connection is the common case at scale: a `VecDeque` would keep the
//! allocation its first completion made (~150 bytes with the allocator's
//! overhead) for the connection's whole life. Here the oldest item sits
//! inline and only a backlog of two or more uses the heap, which is given
//! back as soon as the backlog drains.
//!
//! Owns only the items; never looks inside them.

use std::collections::VecDeque;

pub(super) struct Stash<T> {
    /// The oldest item (`None` only when the stash is empty).
    first: Option<T>,
    /// The items after `first`, in order.
    rest: VecDeque<T>,
}

impl<T> Stash<T> {
    pub(super) const fn new() -> Self {
        Stash {
            first: None,
            rest: VecDeque::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The newest item.
    pub(super) fn back(&self) -> Option<&T> {
        self.rest.back().or(self.first.as_ref())
    }

    pub(super) fn push_back(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let item = self.first.take()?;
        self.first = self.rest.pop_front();
        if self.rest.is_empty() && self.rest.capacity() > 0 {
            // The backlog drained: give its memory back.
            self.rest = VecDeque::new();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_frees_the_backlog_once_drained() {
        let mut s = Stash::new();
        assert!(s.is_empty() && s.back().is_none());
        s.push_back(1);
        assert_eq!(s.rest.capacity(), 0, "one item needs no heap");
        s.push_back(2);
        s.push_back(3);
        assert_eq!((s.len(), s.back()), (3, Some(&3)));
        assert_eq!(s.pop_front(), Some(1));
        assert_eq!(s.pop_front(), Some(2));
        assert_eq!(s.rest.capacity(), 0, "drained backlog freed");
        s.push_back(4);
        assert_eq!(s.pop_front(), Some(3));
        assert_eq!(s.pop_front(), Some(4));
        assert_eq!(s.pop_front(), None);
        assert!(s.is_empty());
    }
}
