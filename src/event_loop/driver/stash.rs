//! [`Stash`]: a connection's completions waiting for the loop, oldest
//! first, in a queue that costs an idle connection two indices.
//!
//! The completion driver keeps one per attached connection, and an idle
//! connection is the common case at scale (issue 14: at most 256 bytes of
//! memory per idle connection, everything included). So a stash is only
//! the head and tail of a list whose nodes live in the driver's one
//! [`StashNodes`]: stashing and taking a completion moves it in and out of
//! a node that the last taken item freed (no allocation in a busy loop,
//! no heap memory held by an idle connection). It was a boxed `VecDeque`
//! per connection, reused through a list of spare boxes: per echoed
//! message ~125 instructions of pushing, popping and handing the box back
//! (callgrind, benches/results/udiet-session11-20261205.md), where a node
//! costs a few loads and stores.
//!
//! Owns only the items; never looks inside them. A stash dropped with
//! items in it leaves them in the nodes until those are dropped (the
//! driver drains a stash before it forgets it).

use std::marker::PhantomData;

/// No node: the end of a list, or an empty stash.
const NIL: u32 = u32::MAX;

struct Node<T> {
    /// `None` only while the node is free.
    item: Option<T>,
    /// The next node of the same list (a stash's, or the free list).
    next: u32,
}

/// The nodes of every stash of one driver, and the free ones (as many as
/// the most items ever stashed at once: a few per busy connection).
pub(super) struct StashNodes<T> {
    nodes: Vec<Node<T>>,
    /// The first free node.
    free: u32,
}

impl<T> StashNodes<T> {
    pub(super) const fn new() -> Self {
        StashNodes {
            nodes: Vec::new(),
            free: NIL,
        }
    }

    /// A node holding `item` (its `next` is `NIL`).
    fn alloc(&mut self, item: T) -> u32 {
        let at = self.free;
        if let Some(node) = self.nodes.get_mut(at as usize) {
            self.free = node.next;
            *node = Node {
                item: Some(item),
                next: NIL,
            };
            return at;
        }
        // Never near `NIL`: the items are a ring's completions in hand.
        let at = self.nodes.len() as u32;
        self.nodes.push(Node {
            item: Some(item),
            next: NIL,
        });
        at
    }

    /// Frees node `at`: its item and what followed it.
    fn release(&mut self, at: u32) -> (Option<T>, u32) {
        let Some(node) = self.nodes.get_mut(at as usize) else {
            return (None, NIL);
        };
        let item = node.item.take();
        let next = std::mem::replace(&mut node.next, self.free);
        self.free = at;
        (item, next)
    }

    fn get(&self, at: u32) -> Option<&Node<T>> {
        self.nodes.get(at as usize)
    }
}

pub(super) struct Stash<T> {
    /// The oldest item's node (`NIL`: none).
    head: u32,
    /// The newest item's node (`NIL`: none).
    tail: u32,
    _items: PhantomData<T>,
}

impl<T> Stash<T> {
    pub(super) const fn new() -> Self {
        Stash {
            head: NIL,
            tail: NIL,
            _items: PhantomData,
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    /// How many items (walks the list: a few at most).
    pub(super) fn len(&self, nodes: &StashNodes<T>) -> usize {
        self.iter(nodes).count()
    }

    /// The newest item.
    pub(super) fn back<'a>(&self, nodes: &'a StashNodes<T>) -> Option<&'a T> {
        nodes.get(self.tail)?.item.as_ref()
    }

    #[inline]
    pub(super) fn push_back(&mut self, item: T, nodes: &mut StashNodes<T>) {
        let at = nodes.alloc(item);
        match nodes.nodes.get_mut(self.tail as usize) {
            Some(tail) => tail.next = at,
            None => self.head = at,
        }
        self.tail = at;
    }

    #[inline]
    pub(super) fn pop_front(&mut self, nodes: &mut StashNodes<T>) -> Option<T> {
        if self.head == NIL {
            return None;
        }
        let (item, next) = nodes.release(self.head);
        self.head = next;
        if next == NIL {
            self.tail = NIL;
        }
        item
    }

    /// The items, oldest first.
    pub(super) fn iter<'a>(&self, nodes: &'a StashNodes<T>) -> impl Iterator<Item = &'a T> {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let node = nodes.get(at)?;
            at = node.next;
            node.item.as_ref()
        })
    }

    /// Keeps only the items `keep` accepts, in order (the others are
    /// dropped here).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool, nodes: &mut StashNodes<T>) {
        let mut at = std::mem::replace(&mut self.head, NIL);
        self.tail = NIL;
        while at != NIL {
            let (item, next) = nodes.release(at);
            if let Some(item) = item.filter(|i| keep(i)) {
                self.push_back(item, nodes);
            }
            at = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_stash_is_two_indices() {
        // Part of the idle-connection budget (see `driver::uring`'s size test).
        assert_eq!(std::mem::size_of::<Stash<u64>>(), 8);
    }

    #[test]
    fn keeps_order_and_reuses_freed_nodes() {
        let mut nodes = StashNodes::new();
        let mut s = Stash::new();
        assert!(s.is_empty() && s.back(&nodes).is_none());
        s.push_back(1, &mut nodes);
        s.push_back(2, &mut nodes);
        s.push_back(3, &mut nodes);
        assert_eq!((s.len(&nodes), s.back(&nodes)), (3, Some(&3)));
        assert_eq!(s.pop_front(&mut nodes), Some(1));
        assert_eq!(s.pop_front(&mut nodes), Some(2));
        s.push_back(4, &mut nodes);
        assert_eq!(nodes.nodes.len(), 3, "a freed node was reused");
        assert_eq!(s.pop_front(&mut nodes), Some(3));
        assert_eq!(s.pop_front(&mut nodes), Some(4));
        assert!(s.is_empty() && s.back(&nodes).is_none());
        assert_eq!(s.pop_front(&mut nodes), None);
        let mut other = Stash::new();
        s.push_back(5, &mut nodes);
        other.push_back(6, &mut nodes);
        s.push_back(7, &mut nodes);
        assert_eq!(nodes.nodes.len(), 3, "both stashes live in the freed nodes");
        assert_eq!(s.iter(&nodes).copied().collect::<Vec<_>>(), [5, 7]);
        assert_eq!(other.iter(&nodes).copied().collect::<Vec<_>>(), [6]);
        assert_eq!(s.pop_front(&mut nodes), Some(5));
        assert_eq!(other.pop_front(&mut nodes), Some(6));
        assert_eq!(s.pop_front(&mut nodes), Some(7));
        assert!(s.is_empty() && other.is_empty());
    }

    #[test]
    fn retain_keeps_order() {
        let mut nodes = StashNodes::new();
        let mut s = Stash::new();
        for i in 1..=5 {
            s.push_back(i, &mut nodes);
        }
        assert_eq!(s.iter(&nodes).copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        s.retain(|&i| i % 2 == 0, &mut nodes);
        assert_eq!(s.iter(&nodes).copied().collect::<Vec<_>>(), [2, 4]);
        assert_eq!(s.back(&nodes), Some(&4));
        s.push_back(6, &mut nodes);
        assert_eq!(s.iter(&nodes).copied().collect::<Vec<_>>(), [2, 4, 6]);
        s.retain(|_| false, &mut nodes);
        assert!(s.is_empty() && s.back(&nodes).is_none());
        assert_eq!(nodes.nodes.len(), 5, "no node was added");
    }

    #[test]
    fn items_are_dropped_once() {
        use std::rc::Rc;
        let item = Rc::new(());
        let mut nodes = StashNodes::new();
        let mut s = Stash::new();
        s.push_back(Rc::clone(&item), &mut nodes);
        s.push_back(Rc::clone(&item), &mut nodes);
        s.retain(|_| false, &mut nodes);
        assert_eq!(Rc::strong_count(&item), 1, "retain dropped them");
        s.push_back(Rc::clone(&item), &mut nodes);
        drop(s.pop_front(&mut nodes));
        assert_eq!(Rc::strong_count(&item), 1);
        s.push_back(Rc::clone(&item), &mut nodes);
        drop(nodes);
        assert_eq!(Rc::strong_count(&item), 1, "the nodes drop what they hold");
    }
}
