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

#![allow(unsafe_code)] // the slots are `MaybeUninit`: every access is justified where it is made

use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;

use crate::error::TrySendError;
use crate::padded::CachePadded;
use crate::sync::{fence, Arc, AtomicBool, AtomicUsize, Ordering, UnsafeCell};

/// The largest capacity a ring accepts (2^30 slots).
///
/// ```
/// use ringloop_actors::ring::{channel, MAX_CAPACITY};
/// let (tx, _rx) = channel::<u8>(MAX_CAPACITY / (1 << 20)); // anything up to the maximum
/// assert_eq!(tx.capacity(), 1024);
/// ```
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
        released: 0,
    };
    (producer, consumer)
}

/// The writing end of a ring. `Send`, not `Clone`: exactly one producer.
///
/// ```
/// use ringloop_actors::ring::channel;
/// let (mut tx, mut rx) = channel(4);
/// let producer = std::thread::spawn(move || {
///     for i in 0..100 {
///         while let Err(e) = tx.try_push(i) {
///             assert!(e.is_full());
///             std::thread::yield_now(); // wait for the consumer
///         }
///     }
/// });
/// let mut got = Vec::new();
/// while got.len() < 100 {
///     rx.drain(usize::MAX, |m| got.push(m));
/// }
/// producer.join().unwrap();
/// assert_eq!(got, (0..100).collect::<Vec<_>>());
/// ```
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to write; equals the shared `tail` outside a batch.
    tail: usize,
    /// The consumer's `head` as last seen; it only ever lags the real one.
    cached_head: usize,
}

impl<T> Producer<T> {
    /// How many messages the ring holds when full.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (tx, _rx) = channel::<u8>(5);
    /// assert_eq!(tx.capacity(), 8); // rounded up to a power of two
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// `true` once the consumer has been dropped.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (tx, rx) = channel::<u8>(4);
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
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

    pub(crate) fn publish(&self) {
        // Release: makes the slot writes before it visible to the consumer's
        // Acquire load of `tail`.
        self.shared.tail.store(self.tail, Ordering::Release);
    }

    /// Enqueues one message, or hands it back if the ring is full or the
    /// consumer is gone. Never blocks.
    ///
    /// ```
    /// use ringloop_actors::{ring::channel, TrySendError};
    /// let (mut tx, rx) = channel(1);
    /// tx.try_push(1).unwrap();
    /// assert!(matches!(tx.try_push(2), Err(TrySendError::Full(2)))); // full
    /// drop(rx);
    /// assert!(matches!(tx.try_push(3), Err(TrySendError::Closed(3)))); // consumer gone
    /// ```
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.try_push_with(value, |value| value)
    }

    /// [`try_push`](Self::try_push) of a `U`, turned into a `T` by `wrap`
    /// only once its slot is known to be free (the mailbox stamps its
    /// messages with their ticket there); `wrap` is not called when the
    /// value is handed back.
    pub(crate) fn try_push_with<U>(
        &mut self,
        value: U,
        wrap: impl FnOnce(U) -> T,
    ) -> Result<(), TrySendError<U>> {
        if self.is_closed() {
            return Err(TrySendError::Closed(value));
        }
        if self.vacancy(1) == 0 {
            return Err(TrySendError::Full(value));
        }
        self.write_slot(wrap(value));
        self.publish();
        Ok(())
    }

    /// After a push, drops what this ring holds if the consumer is gone, so
    /// a message published just as the consumer went away is not kept until
    /// the producer is dropped. The caller must issue a `SeqCst` fence between
    /// its publish and this call (a mailbox sender's wake-up check already
    /// does); the consumer's `Drop` fences on its side.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// use std::sync::atomic::{fence, Ordering};
    /// let (mut tx, rx) = channel(4);
    /// tx.try_push(String::from("late")).unwrap();
    /// drop(rx);
    /// fence(Ordering::SeqCst); // required between the publish and the call
    /// tx.reclaim_if_consumer_gone(); // "late" is dropped now, not with `tx`
    /// ```
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
            producer: Some(self),
            pushed: 0,
            closed,
            free: 0,
        }
    }

    /// Moves as many messages as fit from the front of `queue` into the ring
    /// and publishes them with one store; returns how many moved. Returns 0
    /// (moving nothing) once the consumer is gone.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// use std::collections::VecDeque;
    /// let (mut tx, mut rx) = channel(2);
    /// let mut queue: VecDeque<u8> = VecDeque::from([1, 2, 3]);
    /// assert_eq!(tx.push_from(&mut queue), 2); // as many as fit
    /// assert_eq!(queue, [3]);
    /// assert_eq!(rx.pop(), Some(1));
    /// ```
    pub fn push_from(&mut self, queue: &mut VecDeque<T>) -> usize {
        self.push_from_with(queue, |value| value)
    }

    /// [`push_from`](Self::push_from) for a queue of `U`s, each turned into
    /// a `T` by `wrap` once its slot is known to be free (the mailbox stamps
    /// its messages with their ticket there). Nothing moves, and `wrap` is
    /// not called, when there is no room.
    pub(crate) fn push_from_with<U>(
        &mut self,
        queue: &mut VecDeque<U>,
        mut wrap: impl FnMut(U) -> T,
    ) -> usize {
        if queue.is_empty() || self.is_closed() {
            return 0;
        }
        let n = self.vacancy(queue.len()).min(queue.len());
        for value in queue.drain(..n) {
            self.write_slot(wrap(value));
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
///
/// ```
/// use ringloop_actors::ring::channel;
/// let (mut tx, mut rx) = channel(8);
/// let mut batch = tx.batch();
/// batch.try_push('a').unwrap();
/// batch.try_push('b').unwrap();
/// assert_eq!(batch.len(), 2);
/// drop(batch); // published: both become visible at once
/// assert_eq!(rx.len(), 2);
/// ```
pub struct PushBatch<'a, T> {
    /// `None` once [`finish`](Self::finish)ed.
    producer: Option<&'a mut Producer<T>>,
    pushed: usize,
    closed: bool,
    /// Slots known to be free: room is checked once per run of pushes, not
    /// once per message.
    free: usize,
}

impl<'a, T> PushBatch<'a, T> {
    /// Adds one message to the batch, or hands it back if the ring is full or
    /// the consumer was gone when the batch started.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(2);
    /// let mut batch = tx.batch();
    /// batch.try_push(1).unwrap();
    /// batch.try_push(2).unwrap();
    /// assert!(batch.try_push(3).unwrap_err().is_full());
    /// batch.publish();
    /// assert_eq!(rx.len(), 2);
    /// ```
    pub fn try_push(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.try_push_with(value, |value| value)
    }

    /// [`try_push`](Self::try_push) of a `U`, turned into a `T` by `wrap`
    /// only once it has a slot (as [`Producer::try_push_with`]).
    #[inline]
    pub(crate) fn try_push_with<U>(
        &mut self,
        value: U,
        wrap: impl FnOnce(U) -> T,
    ) -> Result<(), TrySendError<U>> {
        match self.producer.as_deref_mut() {
            Some(producer) if !self.closed => {
                if self.free == 0 {
                    self.free = producer.vacancy(1);
                    if self.free == 0 {
                        return Err(TrySendError::Full(value));
                    }
                }
                producer.write_slot(wrap(value));
                self.free -= 1;
                self.pushed += 1;
                Ok(())
            }
            _ => Err(TrySendError::Closed(value)),
        }
    }

    /// How many messages this batch holds so far.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, _rx) = channel(8);
    /// let mut batch = tx.batch();
    /// assert_eq!(batch.len(), 0);
    /// batch.try_push(1).unwrap();
    /// assert_eq!(batch.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// `true` if nothing was pushed yet.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, _rx) = channel::<u8>(8);
    /// let batch = tx.batch();
    /// assert!(batch.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Publishes the batch now (dropping it does the same).
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(8);
    /// let mut batch = tx.batch();
    /// batch.try_push(1).unwrap();
    /// assert!(rx.is_empty()); // not visible yet
    /// batch.publish();
    /// assert_eq!(rx.pop(), Some(1));
    /// ```
    pub fn publish(self) {}

    /// Publishes the batch and hands the producer back (for a caller that
    /// has more to do with it once the batch is visible).
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(8);
    /// let mut batch = tx.batch();
    /// batch.try_push(1).unwrap();
    /// let tx = batch.finish(); // published; the producer is ours again
    /// tx.try_push(2).unwrap();
    /// assert_eq!((rx.pop(), rx.pop()), (Some(1), Some(2)));
    /// ```
    pub fn finish(mut self) -> &'a mut Producer<T> {
        let producer = self.producer.take().expect("a batch is finished once");
        if self.pushed > 0 {
            producer.publish();
        }
        producer
    }
}

impl<T> Drop for PushBatch<'_, T> {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.as_deref() {
            if self.pushed > 0 {
                producer.publish();
            }
        }
    }
}

/// The reading end of a ring. `Send`, not `Clone`: exactly one consumer.
///
/// ```
/// use ringloop_actors::ring::channel;
/// let (mut tx, mut rx) = channel(8);
/// std::thread::spawn(move || tx.try_push("hello").unwrap()).join().unwrap();
/// assert_eq!(rx.pop(), Some("hello"));
/// assert!(rx.is_producer_closed()); // the producer is gone…
/// assert_eq!(rx.pop(), None); // …and everything it sent was read
/// ```
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Next sequence to read; the shared `head` catches up at the end of
    /// every call, except after [`drain_visible_while`](Self::drain_visible_while),
    /// which leaves that to [`release_taken`](Self::release_taken) (or `Drop`).
    head: usize,
    /// The producer's `tail` as last seen; it only ever lags the real one.
    cached_tail: usize,
    /// The `head` last stored by `release_taken`.
    released: usize,
}

impl<T> Consumer<T> {
    /// How many messages the ring holds when full.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (_tx, rx) = channel::<u8>(16);
    /// assert_eq!(rx.capacity(), 16);
    /// ```
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
        // SAFETY: the caller saw `seq < tail` (`available`, or `peek` after an
        // earlier Acquire load of `tail`): the producer published this
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
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(4);
    /// assert_eq!(rx.pop(), None); // never blocks
    /// tx.try_push(1).unwrap();
    /// tx.try_push(2).unwrap();
    /// assert_eq!(rx.pop(), Some(1)); // oldest first
    /// ```
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
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(8);
    /// for i in 0..5 {
    ///     tx.try_push(i).unwrap();
    /// }
    /// let mut got = Vec::new();
    /// assert_eq!(rx.drain(3, |m| got.push(m)), 3);
    /// assert_eq!(got, [0, 1, 2]);
    /// assert_eq!(rx.drain(usize::MAX, |m| got.push(m)), 2);
    /// ```
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

    /// Re-reads the producer's cursor, making everything published so far
    /// visible to [`peek`](Self::peek) and
    /// [`drain_visible_while`](Self::drain_visible_while), and returns the
    /// sequence of the first message this load made visible, if it made
    /// any visible that earlier loads had not.
    pub(crate) fn refresh(&mut self) -> Option<usize> {
        let seen = self.cached_tail;
        // Acquire: pairs with the producer's Release store of `tail`, so the
        // slot writes before it are visible to our reads.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        (self.cached_tail != seen).then_some(seen)
    }

    /// `f(the visible message at seq)`, without taking it and without
    /// reading the producer's cursor.
    ///
    /// # Panics
    /// If `seq` is not visible and untaken (`head <= seq < cached_tail`).
    pub(crate) fn peek_at<R>(&self, seq: usize, f: impl FnOnce(&T) -> R) -> R {
        assert!(
            seq.wrapping_sub(self.head) < self.cached_tail.wrapping_sub(self.head),
            "peek outside the visible messages"
        );
        // SAFETY: `head <= seq < cached_tail` (checked above): a slot the
        // producer published (our Acquire load of `tail` saw it) and leaves
        // alone until we store a head past it; we have not taken it, and we
        // only read it through a shared reference.
        self.shared
            .slot(seq)
            .with(|p| f(unsafe { (*p).assume_init_ref() }))
    }

    /// `f(oldest visible message)`, without taking it and without reading
    /// the producer's cursor (visible: made so by an earlier load).
    pub(crate) fn peek<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        (self.head != self.cached_tail).then(|| self.peek_at(self.head, f))
    }

    /// Hands every visible message, up to `max`, oldest first, to `f`,
    /// without reading the producer's cursor. Releases like
    /// [`drain_visible_while`](Self::drain_visible_while).
    pub(crate) fn drain_visible(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let n = self.cached_tail.wrapping_sub(self.head).min(max);
        for _ in 0..n {
            let value = self.read_slot();
            f(value);
        }
        n
    }

    /// `true` if an earlier load made messages visible that are not taken
    /// yet. Reads no shared cursor.
    pub(crate) fn has_visible(&self) -> bool {
        self.head != self.cached_tail
    }

    /// Hands visible messages, oldest first, to `f` while `keep` accepts the
    /// oldest one, up to `max`; never reads the producer's cursor (only what
    /// earlier loads made visible). Returns how many were handed over. The
    /// slots go back to the producer at the next
    /// [`release_taken`](Self::release_taken) (one store for several runs),
    /// or when the consumer is dropped, even if `f` panics.
    pub(crate) fn drain_visible_while(
        &mut self,
        max: usize,
        mut keep: impl FnMut(&T) -> bool,
        mut f: impl FnMut(T),
    ) -> usize {
        let mut n = 0;
        while n < max && self.peek(&mut keep).unwrap_or(false) {
            let value = self.read_slot();
            n += 1;
            f(value);
        }
        n
    }

    /// Gives the slots taken since the last call back to the producer (one
    /// store, none if nothing was taken).
    pub(crate) fn release_taken(&mut self) {
        if self.head != self.released {
            self.release();
            self.released = self.head;
        }
    }

    /// `true` if no message is visible now (re-reads the producer's cursor).
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(4);
    /// assert!(rx.is_empty());
    /// tx.try_push(1).unwrap();
    /// assert!(!rx.is_empty());
    /// ```
    pub fn is_empty(&mut self) -> bool {
        self.available() == 0
    }

    /// How many messages are visible now (re-reads the producer's cursor).
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(4);
    /// tx.try_push(1).unwrap();
    /// tx.try_push(2).unwrap();
    /// assert_eq!(rx.len(), 2);
    /// ```
    pub fn len(&mut self) -> usize {
        // Acquire: as in `available`.
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(self.head)
    }

    /// `true` once the producer has been dropped. Messages it published
    /// before are still there to read.
    ///
    /// ```
    /// use ringloop_actors::ring::channel;
    /// let (mut tx, mut rx) = channel(4);
    /// tx.try_push(1).unwrap();
    /// drop(tx);
    /// assert!(rx.is_producer_closed());
    /// assert_eq!(rx.pop(), Some(1)); // still delivered
    /// ```
    pub fn is_producer_closed(&self) -> bool {
        // Acquire: pairs with the producer's Release in `Drop`, so a `pop`
        // after seeing `true` sees every message it ever published.
        self.shared.producer_closed.load(Ordering::Acquire)
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Messages taken but not yet released (`drain_visible_while`) must
        // not be reclaimed again: store the head first.
        self.release();
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
