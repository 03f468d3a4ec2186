//! The ring: a bounded, disruptor-style single-producer single-consumer queue
//! of owned messages.
//!
//! Owns the slot array and the two cursors, and nothing else: it knows nothing
//! of wake-ups, doorbells or mailboxes (see `mailbox.rs` for those). It must
//! never block and never allocate after construction.
//!
//! # Layout and protocol
//!
//! ```text
//!            head (consumer, released)        tail (producer, published)
//!                 v                                v
//!   slots: [ free | msg | msg | msg | msg | msg | free | free ]   (index = seq & mask)
//!                  '------ readable by the consumer ----'
//! ```
//!
//! * Cursors are ever-increasing sequence numbers (wrapping `usize`); a slot is
//!   `seq & mask`, so the capacity is a power of two and "full" is
//!   `tail - head == capacity`.
//! * Each cursor sits on its own [`CachePadded`] line and is written by one side
//!   only. Each side keeps a private copy of the *other* side's cursor
//!   (`cached_head`, `cached_tail`) and re-reads the shared one only when the
//!   ring looks full (producer) or empty (consumer).
//! * Batch publish ([`Producer::batch`]) fills several slots and makes them
//!   visible with one `Release` store of `tail`; batch consume
//!   ([`Consumer::drain`]) takes everything visible after one `Acquire` load of
//!   `tail` and frees it with one `Release` store of `head`.
//! * Undelivered messages are dropped exactly once: when the consumer is
//!   dropped (it reclaims what it never read), and a message published after
//!   that is reclaimed by the producer's next
//!   [`reclaim_if_consumer_gone`](Producer::reclaim_if_consumer_gone) or when
//!   the last endpoint goes.

use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;

use crate::error::TrySendError;
use crate::padded::CachePadded;
use crate::sync::{fence, Arc, AtomicBool, AtomicUsize, Ordering, UnsafeCell};

/// The largest capacity a ring accepts (2^30 slots).
pub const MAX_CAPACITY: usize = 1 << 30;

struct Shared<T> {
    /// Next sequence the consumer will read. Written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next sequence the producer will write. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// Set once when the [`Producer`] is dropped.
    producer_closed: AtomicBool,
    /// Set once when the [`Consumer`] is dropped.
    consumer_closed: AtomicBool,
    /// Held by whoever drops undelivered messages once the consumer is gone
    /// (the consumer in its `Drop`, or the producer after a late push).
    reclaiming: AtomicBool,
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the slots are only ever accessed by the one producer (sequences in
// `tail..head + capacity`, which the consumer has released) and the one consumer
// (sequences in `head..tail`, which the producer has published); the cursor
// protocol hands each slot from one side to the other with a Release store
// matched by an Acquire load, so a `T` is only ever moved between threads,
// which `T: Send` permits.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above; `&Shared` only exposes the atomics, and the slots are
// reached only through `&mut` endpoint methods, one producer and one consumer.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    fn slot(&self, seq: usize) -> &UnsafeCell<MaybeUninit<T>> {
        &self.slots[seq & self.mask]
    }
}

impl<T> Shared<T> {
    /// Drops every message in `head..tail`, once the consumer is gone. Only
    /// one thread reclaims at a time; a thread that finds the flag taken
    /// leaves the work to its holder, who re-checks `tail` after letting go
    /// (the fence pairs with the producer's fence between its publish and its
    /// look at `consumer_closed`), so a message published meanwhile is never
    /// left behind.
    fn reclaim(&self) {
        loop {
            // Acquire: the previous holder's slot reads and head store
            // happened before; Relaxed on failure: nothing is read then.
            if self
                .reclaiming
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                return;
            }
            // Acquire (both): the producer's slot writes, and the last
            // owner's head, are visible before we read the slots.
            let mut head = self.head.load(Ordering::Acquire);
            let tail = self.tail.load(Ordering::Acquire);
            while head != tail {
                // SAFETY: the consumer is gone and we hold `reclaiming`, so
                // nobody else reads these published slots; each is dropped
                // once, and `head` moves past it before the flag is released.
                self.slot(head)
                    .with_mut(|p| unsafe { (*p).assume_init_drop() });
                head = head.wrapping_add(1);
            }
            // Release: our slot reads happen before the producer reuses them.
            self.head.store(head, Ordering::Release);
            // Release: hands the reclaimed state to the next holder.
            self.reclaiming.store(false, Ordering::Release);
            // SeqCst fence: pairs with the producer's fence after its publish
            // (see `Producer::reclaim_if_consumer_gone`): either it sees the
            // flag free, or we see its tail now.
            fence(Ordering::SeqCst);
            if self.tail.load(Ordering::Acquire) == head {
                return;
            }
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` means both endpoints are gone and the Arc's final
        // drop already synchronised with their last accesses.
        let mut seq = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        while seq != tail {
            // SAFETY: sequences in head..tail were published by the producer and
            // never taken by the consumer, so each holds an initialised message
            // that nobody else will read; it is dropped here exactly once.
            self.slot(seq)
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            seq = seq.wrapping_add(1);
        }
    }
}

/// Makes a ring with room for `capacity` messages (rounded up to a power of
/// two, at least 1) and returns its two ends.
///
/// # Panics
/// If `capacity` exceeds [`MAX_CAPACITY`].
///
/// ```
/// let (mut tx, mut rx) = ringloop_actors::ring::channel::<String>(2);
/// tx.try_push("a".to_string()).unwrap();
/// tx.try_push("b".to_string()).unwrap();
/// assert!(tx.try_push("c".to_string()).unwrap_err().is_full());
/// assert_eq!(rx.pop().as_deref(), Some("a"));
/// ```
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity <= MAX_CAPACITY,
        "ring capacity {capacity} exceeds {MAX_CAPACITY}"
    );
    let capacity = capacity.max(1).next_power_of_two();
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        producer_closed: AtomicBool::new(false),
        reclaiming: AtomicBool::new(false),
        consumer_closed: AtomicBool::new(false),
        mask: capacity - 1,
        slots,
    });
    let producer = Producer {
        shared: shared.clone(),
        tail: 0,
        cached_head: 0,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
    };
    (producer, consumer)
}

/// The writing end of a ring. `Send`, not `Clone`: exactly one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to write; equals the shared `tail` outside a batch.
    tail: usize,
    /// The consumer's `head` as last seen; it only ever lags the real one.
    cached_head: usize,
}

impl<T> Producer<T> {
    /// How many messages the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// `true` once the consumer has been dropped.
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the consumer's Release in `Drop`; nothing is read
        // through it, it only makes the answer as fresh as the caller can get.
        self.shared.consumer_closed.load(Ordering::Acquire)
    }

    /// Free slots, re-reading the consumer's cursor only if the cached view
    /// shows fewer than `wanted`.
    fn vacancy(&mut self, wanted: usize) -> usize {
        let capacity = self.capacity();
        let free = capacity - self.tail.wrapping_sub(self.cached_head);
        if free >= wanted {
            return free;
        }
        // Acquire: pairs with the consumer's Release store of `head`, so its
        // reads of the slots we are about to overwrite happened before.
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        capacity - self.tail.wrapping_sub(self.cached_head)
    }

    fn write_slot(&mut self, value: T) {
        let seq = self.tail;
        // SAFETY: `vacancy` showed this sequence free: the consumer released it
        // (Acquire above) and will not read it until we publish a tail past it.
        self.shared
            .slot(seq)
            .with_mut(|p| unsafe { (*p).write(value) });
        self.tail = seq.wrapping_add(1);
    }

    /// Writes one message without publishing it (a batch in progress);
    /// hands it back if the ring is full.
    pub(crate) fn push_unpublished(&mut self, value: T) -> Result<(), T> {
        if self.vacancy(1) == 0 {
            return Err(value);
        }
        self.write_slot(value);
        Ok(())
    }

    pub(crate) fn publish(&self) {
        // Release: makes the slot writes before it visible to the consumer's
        // Acquire load of `tail`.
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    /// Enqueues one message, or hands it back if the ring is full or the
    /// consumer is gone. Never blocks.
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        if self.vacancy(1) == 0 {
            return Err(TrySendError::Full(value));
        }
        self.write_slot(value);
        self.publish();
        Ok(())
    }

    /// After a push, drops what this ring holds if the consumer is gone, so
    /// a message published just as the consumer went away is not kept until
    /// the producer is dropped. The caller must issue a `SeqCst` fence between
    /// its publish and this call (a mailbox sender's wake-up check already
    /// does); the consumer's `Drop` fences on its side.
    pub fn reclaim_if_consumer_gone(&mut self) {
        // Acquire: pairs with the Release in `Consumer::drop`.
        if self.shared.consumer_closed.load(Ordering::Acquire) {
            self.shared.reclaim();
        }
    }

    /// Starts a batch: messages pushed into it become visible to the consumer
    /// together, with one store, when the batch is dropped or published.
    ///
    /// ```
    /// let (mut tx, mut rx) = ringloop_actors::ring::channel::<u32>(4);
    /// let mut batch = tx.batch();
    /// for i in 0..3 {
    ///     batch.try_push(i).unwrap();
    /// }
    /// assert_eq!(rx.pop(), None); // not yet published
    /// batch.publish();
    /// let mut got = Vec::new();
    /// rx.drain(usize::MAX, |m| got.push(m));
    /// assert_eq!(got, [0, 1, 2]);
    /// ```
    pub fn batch(&mut self) -> PushBatch<'_, T> {
        let closed = self.is_closed();
        PushBatch {
            producer: self,
            pushed: 0,
            closed,
        }
    }

    /// Moves as many messages as fit from the front of `queue` into the ring
    /// and publishes them with one store; returns how many moved. Returns 0
    /// (moving nothing) once the consumer is gone.
    pub fn push_from(&mut self, queue: &mut VecDeque<T>) -> usize {
        if queue.is_empty() || self.is_closed() {
            return 0;
        }
        let n = self.vacancy(queue.len()).min(queue.len());
        for value in queue.drain(..n) {
            self.write_slot(value);
        }
        if n > 0 {
            self.publish();
        }
        n
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Release: the consumer that sees the flag (Acquire) also sees every
        // tail store made before it, so it can drain the lane to the end.
        self.shared.producer_closed.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

/// A batch of pushes published with a single store (see [`Producer::batch`]).
pub struct PushBatch<'a, T> {
    producer: &'a mut Producer<T>,
    pushed: usize,
    closed: bool,
}

impl<T> PushBatch<'_, T> {
    /// Adds one message to the batch, or hands it back if the ring is full or
    /// the consumer was gone when the batch started.
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if self.closed {
            return Err(TrySendError::Closed(value));
        }
        self.producer
            .push_unpublished(value)
            .map_err(TrySendError::Full)?;
        self.pushed += 1;
        Ok(())
    }

    /// How many messages this batch holds so far.
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// `true` if nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Publishes the batch now (dropping it does the same).
    pub fn publish(self) {}
}

impl<T> Drop for PushBatch<'_, T> {
    fn drop(&mut self) {
        if self.pushed > 0 {
            self.producer.publish();
        }
    }
}

/// The reading end of a ring. `Send`, not `Clone`: exactly one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to read; equals the shared `head` between calls.
    head: usize,
    /// The producer's `tail` as last seen; it only ever lags the real one.
    cached_tail: usize,
}

impl<T> Consumer<T> {
    /// How many messages the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// Messages ready to read, re-reading the producer's cursor only when the
    /// cached view shows none.
    fn available(&mut self) -> usize {
        if self.cached_tail == self.head {
            // Acquire: pairs with the producer's Release store of `tail`, so
            // the slot writes before it are visible to our reads.
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        }
        self.cached_tail.wrapping_sub(self.head)
    }

    fn read_slot(&mut self) -> T {
        let seq = self.head;
        self.head = seq.wrapping_add(1);
        // SAFETY: `available` showed `seq < tail`: the producer published this
        // slot (Acquire above) and will not touch it again until we release it
        // by storing a head past it; we move the message out exactly once.
        self.shared
            .slot(seq)
            .with_mut(|p| unsafe { (*p).assume_init_read() })
    }

    fn release(&self) {
        // Release: our reads of the slots happen before the producer's Acquire
        // load of `head` lets it overwrite them.
        self.shared.head.store(self.head, Ordering::Release);
    }

    /// Takes the oldest message, if any. Never blocks.
    pub fn pop(&mut self) -> Option<T> {
        if self.available() == 0 {
            return None;
        }
        let value = self.read_slot();
        self.release();
        Some(value)
    }

    /// Batch consume: hands up to `max` visible messages, oldest first, to `f`,
    /// with one load of the producer's cursor and one store of our own.
    /// Returns how many were handed over. If `f` panics, the messages already
    /// taken stay taken and the rest stay in the ring.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        // One Acquire load per batch, so the batch is everything visible now
        // (not only what the cached cursor showed). It pairs with the
        // producer's Release store of `tail`.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        let n = self.cached_tail.wrapping_sub(self.head).min(max);
        if n == 0 {
            return 0;
        }
        let guard = ReleaseOnDrop { consumer: self };
        for _ in 0..n {
            let value = guard.consumer.read_slot();
            f(value);
        }
        drop(guard);
        n
    }

    /// `true` if no message is visible now (re-reads the producer's cursor).
    pub fn is_empty(&mut self) -> bool {
        self.available() == 0
    }

    /// How many messages are visible now (re-reads the producer's cursor).
    pub fn len(&mut self) -> usize {
        // Acquire: as in `available`.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }

    /// `true` once the producer has been dropped. Messages it published
    /// before are still there to read.
    pub fn is_producer_closed(&self) -> bool {
        // Acquire: pairs with the producer's Release in `Drop`, so a `pop`
        // after seeing `true` sees every message it ever published.
        self.shared.producer_closed.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Release: orders our last head store before the flag; a producer
        // that sees it (Acquire) may reclaim from that head on.
        self.shared.consumer_closed.store(true, Ordering::Release);
        // SeqCst fence: pairs with the producer's fence between publishing
        // and checking the flag: either it sees the flag, or we see its push.
        fence(Ordering::SeqCst);
        // Undelivered messages are dropped now, not when the producer goes.
        self.shared.reclaim();
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// Stores the consumer's head when a batch consume ends, even by a panic.
struct ReleaseOnDrop<'a, T> {
    consumer: &'a mut Consumer<T>,
}

impl<T> Drop for ReleaseOnDrop<'_, T> {
    fn drop(&mut self) {
        self.consumer.release();
    }
}
