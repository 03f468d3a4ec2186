//! Message routing: the engine's directory of loops ([`LoopSlot`]: a
//! sender, a connection count, the loop's counters) and how a request
//! reaches loop `i` from any thread ([`Router`]).
//!
//! Owns the choice between waiting and overflowing: an ordinary thread
//! waits for room in its lane; one of the engine's own loop threads never
//! waits, and a request that finds the lane full joins that thread's
//! overflow, one [`Outbox`] per target loop (the same never-blocking sender
//! the acceptor uses), which the loop flushes once per turn. It knows
//! nothing of what the messages say (it is generic over them) and must
//! never drop a message while the thread's overflow is borrowed: dropping
//! one answers its completion, which may send again.
//!
//! # Order
//!
//! A loop thread's requests to one loop all travel through its outbox, so
//! they keep their order. A request that waited in the overflow takes its
//! place in the mailbox's causal order (its ticket) when the flush moves it
//! into the lane, as [`Outbox`] documents.

use std::fmt;

use crate::actors::{CachePadded, Outbox, SendError, SharedSender, TrySendError};
use crate::error::{Error, Result};
use crate::runtime::context::{self, EngineId, LoopGuard};
use crate::runtime::sync::{AtomicUsize, Ordering};
use crate::stats::{LoopCounters, LoopStats};

/// One loop as the rest of the engine sees it.
pub(crate) struct LoopSlot<M> {
    sender: SharedSender<M>,
    /// Connections assigned to the loop (counted from hand-off to close).
    connections: CachePadded<AtomicUsize>,
    /// Written by the loop only; read by [`Router::stats_of`].
    counters: CachePadded<LoopCounters>,
}

impl<M> LoopSlot<M> {
    /// The loop's counters (bumped by the loop only).
    pub(crate) fn counters(&self) -> &LoopCounters {
        &self.counters
    }

    /// One more connection assigned to the loop.
    pub(crate) fn add_connection(&self) {
        // Relaxed: a counter, read only as an estimate (balancing, stats).
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// One connection fewer (closed, or never registered).
    pub(crate) fn remove_connection(&self) {
        // Relaxed: as in `add_connection`.
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections assigned to the loop now (an estimate).
    pub(crate) fn connections(&self) -> usize {
        // Relaxed: as in `add_connection`.
        self.connections.load(Ordering::Relaxed)
    }
}

/// A loop thread's overflow: per target loop, an outbox opened on first use
/// (a lane of its own into that loop's mailbox).
type Overflow<M> = Vec<Option<Outbox<M>>>;

/// The loops of one engine and the way requests reach them.
pub(crate) struct Router<M> {
    engine: EngineId,
    slots: Vec<LoopSlot<M>>,
}

impl<M: Send + 'static> Router<M> {
    /// A router for the loops whose mailboxes `senders` lead to, in loop
    /// order, for engine `engine`.
    pub(crate) fn new(engine: EngineId, senders: Vec<SharedSender<M>>) -> Self {
        let slots = senders
            .into_iter()
            .map(|sender| LoopSlot {
                sender,
                connections: CachePadded::new(AtomicUsize::new(0)),
                counters: CachePadded::new(LoopCounters::default()),
            })
            .collect();
        Self { engine, slots }
    }

    /// The engine these loops belong to.
    pub(crate) fn engine(&self) -> EngineId {
        self.engine
    }

    /// Number of loops.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Loop `index`. Panics if there is no such loop (an engine bug: loop
    /// indices come from the engine itself).
    pub(crate) fn slot(&self, index: usize) -> &LoopSlot<M> {
        &self.slots[index]
    }

    /// The loop holding the fewest connections.
    pub(crate) fn least_loaded(&self) -> usize {
        (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].connections())
            .unwrap_or(0)
    }

    /// Connections open on all loops (an estimate).
    pub(crate) fn connection_count(&self) -> usize {
        self.slots.iter().map(LoopSlot::connections).sum()
    }

    /// A snapshot of loop `index`'s counters.
    pub(crate) fn stats_of(&self, index: usize) -> LoopStats {
        let slot = &self.slots[index];
        slot.counters
            .snapshot(slot.connections() as u64, slot.sender.doorbell_rings())
    }

    /// Makes the current thread one of this engine's loops until the guard
    /// drops; its requests to any loop then never wait.
    pub(crate) fn enter_loop(&self) -> LoopGuard {
        let overflow: Overflow<M> = (0..self.slots.len()).map(|_| None).collect();
        context::enter_loop(self.engine, Box::new(overflow))
    }

    /// Sends `message` to loop `index`: waits for room on ordinary threads;
    /// on this engine's loop threads never waits (overflow instead). On
    /// failure the message is dropped, which answers its completion.
    pub(crate) fn send(&self, index: usize, message: M) -> Result<()> {
        let slot = self.slots.get(index).ok_or(Error::EngineStopped)?;
        let routed = context::with_overflow(self.engine, message, |o: &mut Overflow<M>, m| {
            let outbox = o[index].get_or_insert_with(|| Outbox::new(slot.sender.sender()));
            let sent = outbox.send(m);
            if outbox.held() > 0 {
                // The turn's flush must not be skipped now.
                context::set_overflow_held(true);
            }
            sent
        });
        match routed {
            Ok(Ok(())) => Ok(()),
            // Dropped here, outside the borrow: its completion may send again.
            Ok(Err(SendError(refused))) => {
                drop(refused);
                Err(Error::EngineStopped)
            }
            // One of our loops, inside a send already (a completion answered
            // while the overflow was in use): never wait on a loop thread. A
            // lane can only be full here if its owner is gone or going.
            Err(message) if context::on_loop_of(self.engine) => {
                slot.sender.try_send(message).map_err(|e| {
                    drop(e.into_inner());
                    Error::EngineStopped
                })
            }
            Err(message) => slot.sender.send(message).map_err(|_| Error::EngineStopped),
        }
    }

    /// Sends without waiting; hands the message back with the reason. On a
    /// loop thread, requests waiting in its overflow go first: a new one may
    /// not overtake them, so the lane counts as full until they are through.
    // The error path is cold and hands the message straight back to its
    // caller; boxing it would add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, index: usize, message: M) -> Result<(), (M, Error)> {
        let Some(slot) = self.slots.get(index) else {
            return Err((message, Error::EngineStopped));
        };
        let sent = context::with_overflow(self.engine, message, |o: &mut Overflow<M>, m| {
            o[index]
                .get_or_insert_with(|| Outbox::new(slot.sender.sender()))
                .try_send(m)
        })
        .unwrap_or_else(|m| slot.sender.try_send(m));
        sent.map_err(|e| match e {
            TrySendError::Full(m) => (m, Error::MailboxFull),
            TrySendError::Closed(m) => (m, Error::EngineStopped),
        })
    }

    /// Called by a loop each turn: retries the requests it made that found
    /// a lane full. Returns `true` if some are still waiting (the loop then
    /// parks with a short timeout, since nothing wakes it when room frees up).
    pub(crate) fn flush_overflow(&self) -> bool {
        if !context::overflow_held() {
            // Nothing was held since the last flush that left none (the
            // common turn): no borrow, no walk over the outboxes.
            return false;
        }
        let mut undeliverable = Vec::new();
        let waiting = context::with_overflow(self.engine, (), |o: &mut Overflow<M>, ()| {
            let mut waiting = false;
            for outbox in o.iter_mut().flatten() {
                match outbox.flush() {
                    Ok(true) => {}
                    Ok(false) => waiting = true,
                    Err(SendError(closed)) => undeliverable.push(closed),
                }
            }
            waiting
        });
        if let Ok(waiting) = waiting {
            context::set_overflow_held(waiting);
        }
        // Dropped after the borrow: each drop answers a completion.
        drop(undeliverable);
        waiting.unwrap_or(false)
    }

    /// Offers `make()` to every loop without waiting (a wake-up: a full lane
    /// means the loop is awake with work queued anyway).
    pub(crate) fn offer_all(&self, make: impl Fn() -> M) {
        for slot in &self.slots {
            let _ = slot.sender.try_send(make());
        }
    }
}

impl<M> fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("engine", &self.engine)
            .field("loops", &self.slots.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicUsize as Count;
    use std::sync::Arc;

    use super::*;
    use crate::actors::{Mailbox, MailboxConfig};

    /// A message that counts its drops (a completion answered once).
    struct Tracked(Arc<Count>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn mailboxes<T: Send + 'static>(n: usize, capacity: usize) -> Vec<Mailbox<T>> {
        (0..n)
            .map(|_| {
                Mailbox::with_config(MailboxConfig::new().lane_capacity(capacity)).expect("mailbox")
            })
            .collect()
    }

    fn router<T: Send + 'static>(boxes: &[Mailbox<T>]) -> Router<T> {
        Router::new(
            EngineId::next(),
            boxes.iter().map(Mailbox::shared_sender).collect(),
        )
    }

    fn drain<T>(mailbox: &mut Mailbox<T>) -> Vec<T> {
        let mut got = Vec::new();
        mailbox.drain(usize::MAX, |m| got.push(m));
        got
    }

    #[test]
    fn ordinary_threads_reach_the_loop_they_name() {
        let mut boxes = mailboxes::<u32>(2, 8);
        let router = router(&boxes);
        router.send(1, 7).unwrap();
        router.try_send(0, 8).unwrap();
        assert_eq!(drain(&mut boxes[1]), [7]);
        assert_eq!(drain(&mut boxes[0]), [8]);
        assert!(matches!(router.send(2, 9), Err(Error::EngineStopped)));
        assert!(matches!(
            router.try_send(5, 9),
            Err((9, Error::EngineStopped))
        ));
        assert!(!router.flush_overflow(), "no overflow off a loop thread");
    }

    #[test]
    fn a_loop_never_waits_on_a_full_lane_and_keeps_its_order() {
        let mut boxes = mailboxes::<u32>(2, 1);
        let router = router(&boxes);
        let _loop1 = router.enter_loop();
        for i in 0..5 {
            router.send(0, i).unwrap(); // a 1-slot lane: 4 wait, none blocks
        }
        assert!(router.flush_overflow(), "still waiting for room");
        // A try-send may not overtake what waits.
        assert!(matches!(
            router.try_send(0, 99),
            Err((99, Error::MailboxFull))
        ));
        let mut got = Vec::new();
        while got.len() < 5 {
            got.extend(drain(&mut boxes[0]));
            router.flush_overflow();
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert!(!router.flush_overflow());
        router.try_send(0, 5).unwrap();
        assert_eq!(drain(&mut boxes[0]), [5]);
    }

    #[test]
    fn an_overflowed_request_is_ordered_from_its_flush_on() {
        let mut boxes = mailboxes::<&'static str>(1, 1);
        let router = Arc::new(router(&boxes));
        let _loop0 = router.enter_loop();
        router.send(0, "first").unwrap();
        router.send(0, "held").unwrap(); // the lane is full: held
        assert_eq!(drain(&mut boxes[0]), ["first"]);
        assert!(!router.flush_overflow(), "moved into the lane");
        // From the flush on, a send by anyone comes after it.
        let other = router.clone();
        std::thread::spawn(move || other.send(0, "later").unwrap())
            .join()
            .unwrap();
        let mut got = drain(&mut boxes[0]);
        got.extend(drain(&mut boxes[0]));
        assert_eq!(got, ["held", "later"]);
    }

    #[test]
    fn another_engines_loop_is_an_ordinary_thread_here() {
        let mut mine = mailboxes::<u32>(1, 4);
        let theirs = mailboxes::<u32>(1, 4);
        let (mine_router, their_router) = (router(&mine), router(&theirs));
        let _their_loop = their_router.enter_loop();
        mine_router.send(0, 1).unwrap(); // not our loop: straight into the lane
        assert!(!mine_router.flush_overflow());
        assert_eq!(drain(&mut mine[0]), [1]);
    }

    #[test]
    fn held_requests_are_answered_once_when_the_loop_goes_or_the_target_closes() {
        let drops = Arc::new(Count::new(0));
        let boxes = mailboxes::<Tracked>(2, 1);
        let router = router(&boxes);
        {
            let _loop0 = router.enter_loop();
            for _ in 0..3 {
                router.send(1, Tracked(drops.clone())).unwrap();
            }
            assert_eq!(drops.load(Ordering::Relaxed), 0);
        } // the loop thread ends: its 2 held requests are dropped (answered)
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let mut boxes = boxes;
        let target = boxes.pop().expect("two mailboxes");
        let _loop0 = router.enter_loop();
        router.send(1, Tracked(drops.clone())).unwrap(); // a new lane: sent
        router.send(1, Tracked(drops.clone())).unwrap(); // lane full: held
        drop(target);
        let before = drops.load(Ordering::Relaxed);
        assert!(!router.flush_overflow(), "the target is gone");
        assert_eq!(
            drops.load(Ordering::Relaxed),
            before + 1,
            "the held one, once"
        );
        assert!(matches!(
            router.send(1, Tracked(drops.clone())),
            Err(Error::EngineStopped)
        ));
        assert_eq!(drops.load(Ordering::Relaxed), before + 2);
    }
}
