//! The sending side of a mailbox: [`Sender`] (one lane, for a known producer
//! such as the acceptor, an event loop or a pool worker) and [`SharedSender`]
//! (any thread: one lane per thread, opened on first use).
//!
//! Owns only the producer ends of lanes and the wait-for-room policy of the
//! blocking sends. It must never drop a message: every failure hands the
//! message back to the caller.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::error::{SendError, SendTimeoutError, TrySendError};
use crate::mailbox::Shared;
use crate::ring::Producer;
use crate::sync::Arc;

/// Retries `attempt` with [`Backoff`] while the lane is full.
fn send_blocking<T>(
    mut value: T,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(T) -> Result<(), TrySendError<T>>,
) -> Result<(), SendTimeoutError<T>> {
    let mut backoff = Backoff::new();
    loop {
        match attempt(value) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(v)) => return Err(SendTimeoutError::Closed(v)),
            Err(TrySendError::Full(v)) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(SendTimeoutError::Timeout(v));
                }
                value = v;
                backoff.snooze();
            }
        }
    }
}

fn never_times_out<T>(result: Result<(), SendTimeoutError<T>>) -> Result<(), SendError<T>> {
    result.map_err(|e| SendError(e.into_inner()))
}

/// One producer lane into a [`Mailbox`](crate::Mailbox). `Send`; cloning opens
/// a new lane, so every clone is an independent single producer.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    lane: Producer<T>,
}

impl<T> Sender<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        let lane = shared.open_lane();
        Self { shared, lane }
    }

    /// Sends without waiting; hands the message back if the lane is full or
    /// the mailbox is closed. Costs no system call while the owner is awake.
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        self.shared.push(&mut self.lane, value)
    }

    /// Sends, waiting for room while the lane is full (spinning, yielding,
    /// then sleeping up to 1 ms at a time). Fails only if the mailbox is
    /// closed. Not for event loops: they use an [`Outbox`](crate::Outbox).
    pub fn send(&mut self, value: T) -> Result<(), SendError<T>> {
        never_times_out(send_blocking(value, None, |v| self.try_send(v)))
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    pub fn send_timeout(&mut self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = Instant::now() + timeout;
        send_blocking(value, Some(deadline), |v| self.try_send(v))
    }

    /// Batch publish: moves as many messages as fit from the front of
    /// `queue` into the lane with one cursor store and at most one doorbell
    /// write. Returns how many moved, or `Err(())` if the mailbox is closed.
    #[allow(clippy::result_unit_err)]
    pub fn try_send_from(&mut self, queue: &mut VecDeque<T>) -> Result<usize, ()> {
        if self.is_closed() {
            return Err(());
        }
        let n = self.lane.push_from(queue);
        if n > 0 {
            self.shared.notify();
            self.lane.reclaim_if_consumer_gone();
        }
        Ok(n)
    }

    /// Starts a batch whose messages are published together, with one
    /// cursor store and at most one doorbell write, when it is dropped.
    ///
    /// ```
    /// let mut mailbox = ringloop_actors::Mailbox::<u32>::new()?;
    /// let mut tx = mailbox.sender();
    /// {
    ///     let mut batch = tx.batch();
    ///     for i in 0..10 {
    ///         batch.try_send(i).unwrap();
    ///     }
    /// } // published here
    /// let mut got = Vec::new();
    /// mailbox.drain(usize::MAX, |m| got.push(m));
    /// assert_eq!(got, (0..10).collect::<Vec<_>>());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn batch(&mut self) -> SendBatch<'_, T> {
        let closed = self.shared.is_closed() || self.lane.is_closed();
        SendBatch {
            lane: &mut self.lane,
            shared: &self.shared,
            pushed: 0,
            closed,
        }
    }

    /// `true` once the mailbox is closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed() || self.lane.is_closed()
    }

    /// Messages this lane holds when full.
    pub fn capacity(&self) -> usize {
        self.lane.capacity()
    }
}

impl<T> Clone for Sender<T> {
    /// Opens a new lane into the same mailbox.
    fn clone(&self) -> Self {
        Self::new(self.shared.clone())
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("mailbox", &self.shared.id)
            .field("lane", &self.lane)
            .finish()
    }
}

/// Messages sent together (see [`Sender::batch`]).
pub struct SendBatch<'a, T> {
    lane: &'a mut Producer<T>,
    shared: &'a Shared<T>,
    pushed: usize,
    closed: bool,
}

impl<T> SendBatch<'_, T> {
    /// Adds a message; hands it back if the lane is full or the mailbox closed.
    pub fn try_send(&mut self, value: T) -> Result<(), TrySendError<T>> {
        if self.closed {
            return Err(TrySendError::Closed(value));
        }
        self.lane
            .push_unpublished(value)
            .map_err(TrySendError::Full)?;
        self.pushed += 1;
        Ok(())
    }

    /// Messages in the batch so far.
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// `true` if nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for SendBatch<'_, T> {
    fn drop(&mut self) {
        if self.pushed > 0 {
            self.lane.publish();
            self.shared.notify();
            // After notify's fence, as for a single send.
            self.lane.reclaim_if_consumer_gone();
        }
    }
}

/// A lane in the per-thread cache, with its element type erased.
trait CachedLane: Any {
    fn mailbox_gone(&self) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: 'static> CachedLane for Producer<T> {
    fn mailbox_gone(&self) -> bool {
        self.is_closed()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

thread_local! {
    /// This thread's lanes, keyed by mailbox id. Entries hold only ring
    /// producers, never the mailbox itself, so a closed mailbox's doorbell fd
    /// is released at once; entries of dead mailboxes are pruned whenever a
    /// new lane is added.
    static THREAD_LANES: RefCell<Vec<(u64, Box<dyn CachedLane>)>> = const { RefCell::new(Vec::new()) };
}

/// A `Send + Sync + Clone` sender for any thread: each thread that sends gets
/// its own SPSC lane, opened on first use and cached thread-locally, so the
/// hot path stays single-producer. Messages sent from one thread arrive in the
/// order sent. A thread's lane is reclaimed when the thread exits (after the
/// owner has drained it).
///
/// ```
/// let mut mailbox = ringloop_actors::Mailbox::<u32>::new()?;
/// let tx = mailbox.shared_sender();
/// let handles: Vec<_> = (0..4)
///     .map(|i| {
///         let tx = tx.clone();
///         std::thread::spawn(move || tx.send(i).unwrap())
///     })
///     .collect();
/// handles.into_iter().for_each(|h| h.join().unwrap());
/// let mut got = Vec::new();
/// mailbox.drain(usize::MAX, |m| got.push(m));
/// got.sort();
/// assert_eq!(got, [0, 1, 2, 3]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SharedSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> SharedSender<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        Self { shared }
    }

    /// How many times producers have rung the mailbox's doorbell so far.
    pub fn doorbell_rings(&self) -> u64 {
        self.shared.doorbell_rings()
    }
}

impl<T: Send + 'static> SharedSender<T> {
    /// Runs `f` on this thread's lane into the mailbox, opening it if needed.
    fn with_lane<R>(&self, f: impl FnOnce(&mut Producer<T>) -> R) -> R {
        let id = self.shared.id;
        let mut f = Some(f);
        // Lanes of dead mailboxes are moved out of the cache here and dropped
        // only after the cache's `borrow_mut` has ended (below the `try_with`):
        // dropping a lane can drop the last messages in its ring, and a
        // message's `Drop` may itself send through a `SharedSender` on this
        // thread, which borrows the cache again (a nested `borrow_mut` panics).
        // Same reason as in `forget_lane`.
        let mut pruned = Vec::new();
        let cached = THREAD_LANES.try_with(|cell| {
            let mut lanes = cell.borrow_mut();
            let index = match lanes.iter().position(|(key, _)| *key == id) {
                Some(index) => index,
                None => {
                    let mut i = 0;
                    while i < lanes.len() {
                        if lanes[i].1.mailbox_gone() {
                            pruned.push(lanes.swap_remove(i));
                        } else {
                            i += 1;
                        }
                    }
                    lanes.push((id, Box::new(self.shared.open_lane())));
                    lanes.len() - 1
                }
            };
            let lane = lanes[index].1.as_any_mut().downcast_mut::<Producer<T>>();
            // The id is unique per mailbox and a mailbox has one element type,
            // so the downcast cannot fail; if it ever did, fall through to a
            // one-off lane below rather than panic.
            lane.map(|lane| (f.take().expect("called once"))(lane))
        });
        drop(pruned); // the cache is no longer borrowed
        match cached {
            Ok(Some(result)) => result,
            // The thread-local cache is being torn down (thread exit): use a
            // one-off lane. Its messages are drained before it is reclaimed.
            _ => {
                let mut lane = self.shared.open_lane();
                (f.take().expect("called once"))(&mut lane)
            }
        }
    }

    /// Sends without waiting; hands the message back if this thread's lane is
    /// full or the mailbox is closed.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let result = self.with_lane(|lane| self.shared.push(lane, value));
        if let Err(TrySendError::Closed(_)) = &result {
            self.forget_lane();
        }
        result
    }

    /// Sends, waiting for room while this thread's lane is full. Fails only if
    /// the mailbox is closed.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        never_times_out(send_blocking(value, None, |v| self.try_send(v)))
    }

    /// Like [`send`](Self::send), giving up after `timeout`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let deadline = Instant::now() + timeout;
        send_blocking(value, Some(deadline), |v| self.try_send(v))
    }

    /// `true` once the mailbox is closed or dropped.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Drops this thread's cached lane into a closed mailbox.
    fn forget_lane(&self) {
        let id = self.shared.id;
        let _ = THREAD_LANES.try_with(|cell| {
            // Take the entry out before dropping it, so no borrow is held
            // while a ring (and its messages) is dropped.
            let removed = {
                let mut lanes = cell.borrow_mut();
                lanes
                    .iter()
                    .position(|(key, _)| *key == id)
                    .map(|i| lanes.swap_remove(i))
            };
            drop(removed);
        });
    }
}

impl<T> Clone for SharedSender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for SharedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSender")
            .field("mailbox", &self.shared.id)
            .finish()
    }
}
