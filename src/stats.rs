//! Per-loop counters ([`LoopStats`]): connections, bytes, messages, doorbell
//! writes, back-pressure events, timeouts.
//!
//! Owns only the numbers. Each counter has a single writer (its loop), so it
//! is bumped with a relaxed load and store rather than a locked
//! read-modify-write; any thread may read a snapshot through the
//! [`EngineHandle`](crate::EngineHandle).

use std::fmt;
use std::iter::Sum;
use std::ops::Add;
use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters of one loop, written by that loop only.
#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    pub(crate) connections_opened: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) back_pressure_events: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) buffered: AtomicU64,
    pub(crate) budget_pauses: AtomicU64,
    pub(crate) budget_closes: AtomicU64,
    pub(crate) timers: AtomicU64,
}

/// Adds `n` to a counter only its own loop writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    // Relaxed load + store: one writer, so no increment can be lost, and
    // readers only need some recent value.
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

/// A snapshot of one loop's counters (or, summed, of an engine's).
///
/// ```
/// use ringloop::LoopStats;
/// let total: LoopStats = [LoopStats::default(), LoopStats::default()].into_iter().sum();
/// assert_eq!(total.bytes_in, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Connections open now.
    ///
    /// ```
    /// use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// while engine.total_stats().connections_opened == 0 {
    ///     std::thread::sleep(std::time::Duration::from_millis(1)); // accepted soon
    /// }
    /// drop(client);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// // Once stopped, the counters are final: none open, one opened in all.
    /// let stats = engine.total_stats();
    /// assert_eq!((stats.connections, stats.connections_opened), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub connections: u64,
    /// Connections opened since start.
    pub connections_opened: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Mailbox messages handled.
    pub messages: u64,
    /// Doorbell writes made to wake this loop.
    pub doorbell_writes: u64,
    /// Times a connection passed its high-water mark.
    pub back_pressure_events: u64,
    /// Connections closed by a timeout.
    pub timeouts: u64,
    /// Bytes the loop's connections hold now (unconsumed input and queued
    /// output), as counted against the engine's
    /// [`buffer_budget`](crate::EngineBuilder::buffer_budget).
    pub buffered_bytes: u64,
    /// Times a connection stopped being read because the engine neared its
    /// buffer budget.
    pub budget_pauses: u64,
    /// Connections closed with
    /// [`CloseReason::BufferBudget`](crate::CloseReason::BufferBudget).
    pub budget_closes: u64,
    /// Connection timeouts scheduled on the loop's timer wheel now (as of
    /// the loop's last turn), superseded entries not yet due included: a
    /// few bytes of memory each. About one per connection that has a
    /// timeout running (an idle, read or half-closed timeout, a write
    /// timeout with bytes unsent); none for a quiet connection under the
    /// default timeouts.
    pub timers: u64,
}

impl LoopCounters {
    pub(crate) fn snapshot(&self, connections: u64, doorbell_writes: u64) -> LoopStats {
        // Relaxed: a snapshot of independent counters.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LoopStats {
            connections,
            connections_opened: get(&self.connections_opened),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            messages: get(&self.messages),
            doorbell_writes,
            back_pressure_events: get(&self.back_pressure_events),
            timeouts: get(&self.timeouts),
            buffered_bytes: get(&self.buffered),
            budget_pauses: get(&self.budget_pauses),
            budget_closes: get(&self.budget_closes),
            timers: get(&self.timers),
        }
    }
}

impl Add for LoopStats {
    type Output = LoopStats;
    fn add(self, o: LoopStats) -> LoopStats {
        LoopStats {
            connections: self.connections + o.connections,
            connections_opened: self.connections_opened + o.connections_opened,
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
            messages: self.messages + o.messages,
            doorbell_writes: self.doorbell_writes + o.doorbell_writes,
            back_pressure_events: self.back_pressure_events + o.back_pressure_events,
            timeouts: self.timeouts + o.timeouts,
            buffered_bytes: self.buffered_bytes + o.buffered_bytes,
            budget_pauses: self.budget_pauses + o.budget_pauses,
            budget_closes: self.budget_closes + o.budget_closes,
            timers: self.timers + o.timers,
        }
    }
}

impl Sum for LoopStats {
    fn sum<I: Iterator<Item = LoopStats>>(iter: I) -> LoopStats {
        iter.fold(LoopStats::default(), Add::add)
    }
}

impl fmt::Display for LoopStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections open ({} opened), {} bytes in, {} bytes out, {} messages, {} doorbell writes, {} back-pressure events, {} timeouts, {} bytes buffered, {} budget pauses, {} budget closes, {} timers",
            self.connections,
            self.connections_opened,
            self.bytes_in,
            self.bytes_out,
            self.messages,
            self.doorbell_writes,
            self.back_pressure_events,
            self.timeouts,
            self.buffered_bytes,
            self.budget_pauses,
            self.budget_closes,
            self.timers
        )
    }
}
