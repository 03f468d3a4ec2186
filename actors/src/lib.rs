//! # ringloop-actors
//!
//! The message-passing core of [ringloop]: how its actors (the acceptor, the
//! event loops, the worker pool) talk to each other. This crate knows nothing
//! of sockets; it owns only mailboxes and what they are made of.
//!
//! | piece | what it is |
//! |---|---|
//! | [`ring`] | a bounded, disruptor-style SPSC ring of owned messages: power-of-two capacity, cache-padded cursors, cached opposite index, batch publish and batch consume |
//! | [`WakeWord`] | one flag per mailbox saying "the owner is parked", shared by all lanes |
//! | [`Doorbell`] | the fd a parked owner waits on: eventfd, or a pipe where eventfd is missing |
//! | [`Mailbox`] | the owner's side: any number of lanes (one SPSC ring per producer), drained in causal order across lanes (tickets) |
//! | [`Sender`] / [`SharedSender`] | a lane for a known producer / a lane per thread for anyone else |
//! | [`Outbox`] | a never-blocking sender with a local overflow, for event loops |
//! | [`slab`] | a generational table: a stale key never reaches a reused slot |
//!
//! # The wake protocol
//!
//! An owner that is awake costs producers no system call: they publish into
//! their lane and read the wake word, nothing more. Only when the owner has
//! announced that it is parking does one producer (the first to claim the
//! word) write the doorbell.
//!
//! ```text
//!   producer A ──ring A──┐
//!   producer B ──ring B──┼──▶ Mailbox (owner thread) ◀── epoll_wait / poll
//!   thread  C ──ring C──┘          ▲                          ▲
//!        │                         │ parked?                  │
//!        └──── fence; if parked && swap(parked,false) ──▶ Doorbell (eventfd)
//!
//!   owner, each turn:  drain lanes ─▶ parked := true; fence ─▶ lanes empty?
//!                         ▲               yes: block on poller (doorbell fd)
//!                         │               no : don't block
//!                         └──────────── parked := false ◀──┘
//! ```
//!
//! The owner *announces* parking (`parked := true`, then a `SeqCst` fence) and
//! *re-checks* every lane before it blocks; a producer publishes, fences, and
//! rings only if it then sees `parked` and wins the swap back to `false`. The
//! two fences are totally ordered, so either the owner's re-check sees the
//! message or the producer sees the owner parked: a wake-up can never be lost.
//! [`wake`] explains the orderings; `tests/loom_*.rs` check them under loom.
//!
//! # Order
//!
//! Each lane is FIFO, and across lanes the owner receives messages in
//! **causal order**: if one send happens-before another (it returned, and
//! the thread that makes the other send has since seen something the first
//! thread did after it: a flag, a channel message, a lock, a join), the
//! first is received first, whatever lanes they travel on. Every publish
//! carries a ticket from one per-mailbox counter (one `fetch_add` per message
//! or per batch), and the owner hands messages over in ticket order, only
//! once a scan of every lane shows that no predecessor can still be unseen.
//! No message ever waits for a producer that has not published yet, so the
//! owner is never held up by a slow sender. The [`Mailbox`] docs give the
//! argument; `tests/loom_causal.rs` checks it under loom. (A message held in
//! an [`Outbox`]'s local overflow takes its place in that order when the
//! outbox flushes it.)
//!
//! # Full lanes
//!
//! Nothing is dropped silently and nobody deadlocks:
//! * [`Sender::try_send`] hands the message back when the lane is full;
//! * [`Sender::send`] (ordinary threads) waits for room with a backoff, and
//!   fails with the message only if the mailbox is closed;
//! * an event loop never waits: it sends through an [`Outbox`], which keeps a
//!   local overflow and retries on the loop's next turn.
//!
//! # Close
//!
//! When the owner closes or drops its mailbox, every later send fails with the
//! message handed back. When a producer goes away, its lane is drained to the
//! end and then reclaimed. Messages never delivered are dropped exactly once,
//! as soon as the owner drops its mailbox (a message a sender publishes just
//! after that is dropped by the sender itself, right after its push).
//!
//! # Example
//!
//! ```
//! use ringloop_actors::Mailbox;
//! use std::time::Duration;
//!
//! let mut mailbox = Mailbox::<u64>::new()?;
//! let mut tx = mailbox.sender();
//! let producer = std::thread::spawn(move || {
//!     for i in 0..1000 {
//!         tx.send(i).unwrap();
//!     }
//! });
//! let mut next = 0;
//! while next < 1000 {
//!     mailbox.drain(usize::MAX, |m| {
//!         assert_eq!(m, next); // one lane is FIFO
//!         next += 1;
//!     });
//!     mailbox.park(Some(Duration::from_millis(10)))?;
//! }
//! producer.join().unwrap();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [ringloop]: https://docs.rs/ringloop

// `unsafe` lives only in the ring (its slots are `MaybeUninit`), allowed there.
#![deny(unsafe_code)]

mod backoff;
mod doorbell;
mod error;
mod mailbox;
mod outbox;
mod padded;
pub mod ring;
mod sender;
mod shared;
pub mod slab;
mod sync;
pub mod wake;

pub use doorbell::{Doorbell, DoorbellKind};
pub use error::{SendError, SendTimeoutError, TrySendError};
pub use mailbox::{Mailbox, MailboxConfig, DEFAULT_LANE_CAPACITY};
pub use outbox::Outbox;
pub use padded::CachePadded;
pub use sender::{SendBatch, Sender, SharedSender};
pub use wake::WakeWord;
