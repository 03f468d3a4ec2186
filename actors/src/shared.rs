//! What the owner of a mailbox and its senders share: the lanes' message
//! type (a value with its ticket), the registry of lanes, the wake word and
//! doorbell, the ticket counter, and the push/notify steps every sender
//! takes.
//!
//! Owns the producer side of the protocol described in the mailbox's module
//! docs; it knows nothing of `Mailbox` or `Sender`, which both build on it
//! (so neither imports the other). It must never block.

use crate::doorbell::Doorbell;
use crate::error::TrySendError;
use crate::padded::CachePadded;
use crate::ring::{self, Consumer, Producer};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use crate::wake::WakeWord;

/// A message in a lane, with the ticket that orders it across lanes.
pub(crate) struct Stamped<T> {
    pub(crate) ticket: u64,
    pub(crate) value: T,
}

/// The producer end of a lane.
pub(crate) type LaneProducer<T> = Producer<Stamped<T>>;
pub(crate) type LaneConsumer<T> = Consumer<Stamped<T>>;

/// State shared by the owner and every sender.
pub(crate) struct Shared<T> {
    pub(crate) id: u64,
    pub(crate) wake: WakeWord,
    pub(crate) doorbell: Doorbell,
    pub(crate) lane_capacity: usize,
    /// Set once by [`Mailbox::close`] or drop.
    pub(crate) closed: AtomicBool,
    /// Hint that `registry.lanes` holds lanes the owner has not adopted yet.
    pub(crate) new_lanes: AtomicBool,
    pub(crate) registry: Mutex<Registry<T>>,
    /// Doorbell writes made by producers (statistics).
    pub(crate) rings: AtomicU64,
    /// Source of tickets: the order of sends across lanes (module docs).
    pub(crate) tickets: CachePadded<AtomicU64>,
}

pub(crate) struct Registry<T> {
    pub(crate) lanes: Vec<LaneConsumer<T>>,
    pub(crate) closed: bool,
}

impl<T> Shared<T> {
    /// Opens a new lane and returns its producer end. After close the lane is
    /// born closed, so sends on it fail instead of vanishing.
    pub(crate) fn open_lane(&self) -> LaneProducer<T> {
        let (producer, consumer) = ring::channel(self.lane_capacity);
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if registry.closed {
            drop(consumer);
        } else {
            registry.lanes.push(consumer);
            // Release: with the registry mutex, hands the new consumer to the
            // owner's Acquire swap in `adopt_new_lanes`.
            self.new_lanes.store(true, Ordering::Release);
        }
        producer
    }

    pub(crate) fn doorbell_rings(&self) -> u64 {
        // Relaxed: a statistic.
        self.rings.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close_registry`.
        self.closed.load(Ordering::Acquire)
    }

    /// A ticket for the next publish (one message, or one batch).
    pub(crate) fn take_ticket(&self) -> u64 {
        // Relaxed: only the order of the tickets matters, and read-modify-
        // writes of one atomic are totally ordered consistently with
        // happens-before (a send that happens-before another gets the
        // smaller ticket). The message itself travels by the lane's
        // Release/Acquire tail.
        self.tickets.fetch_add(1, Ordering::Relaxed)
    }

    /// Pushes one message on `lane` and wakes the owner if it is parked.
    pub(crate) fn push(&self, lane: &mut LaneProducer<T>, value: T) -> Result<(), TrySendError<T>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        // Room first, then the ticket, then the publish: a full lane costs
        // no ticket, and the ticket is taken after this send began.
        lane.try_push_with(value, |value| Stamped {
            ticket: self.take_ticket(),
            value,
        })?;
        self.notify();
        // After notify's SeqCst fence: if the owner dropped its end meanwhile,
        // the message is dropped now (answering whatever it carries) rather
        // than when this lane goes.
        lane.reclaim_if_consumer_gone();
        Ok(())
    }

    /// Rings the doorbell if the wake word says the owner is parked.
    pub(crate) fn notify(&self) {
        if self.wake.notify() {
            // Relaxed: a statistic.
            self.rings.fetch_add(1, Ordering::Relaxed);
            // A failed write can only mean the doorbell is already rung.
            let _ = self.doorbell.ring();
        }
    }

    pub(crate) fn close_registry(&self) -> Vec<LaneConsumer<T>> {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.closed = true;
        // Release: senders that see `closed` stop sending.
        self.closed.store(true, Ordering::Release);
        std::mem::take(&mut registry.lanes)
    }
}
