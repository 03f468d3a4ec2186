//! The messages actors send each other: what an event loop and the acceptor
//! accept in their mailboxes.
//!
//! Owns only the message vocabulary. A message that is never delivered (its
//! mailbox closed first) is dropped, and dropping it releases what it carries:
//! an accepted socket is closed, a pending completion is told the engine
//! stopped. Nothing is lost silently.

use std::fmt;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::addr::{ListenAddr, SockAddr};
use crate::error::{Error, Result};
use crate::handle::ConnHandle;
use crate::handle::ConnId;
use crate::handler::LoopContext;
use crate::tls::TlsConnector;

/// A closure run on a loop.
pub(crate) type LoopTask = Box<dyn FnOnce(&mut LoopContext) + Send>;

/// The initial state a dial or enroll through the engine gives its
/// connection, typed by the engine's caller; the loop checks it is the
/// handler's `State`.
pub(crate) type InitialState = Box<dyn std::any::Any + Send>;

/// `state` as the handler's state type `S`, or why it is not.
pub(crate) fn initial_state<S: 'static>(state: Option<InitialState>) -> Result<Option<S>> {
    match state.map(|s| s.downcast::<S>()) {
        None => Ok(None),
        Some(Ok(state)) => Ok(Some(*state)),
        Some(Err(_)) => Err(Error::InvalidConfig(format!(
            "the initial state given to dial or enroll is not the handler's State type ({})",
            std::any::type_name::<S>()
        ))),
    }
}

/// A completion that must be answered exactly once: if the message carrying
/// it is dropped undelivered, it answers [`Error::EngineStopped`].
pub(crate) struct Completion<T: 'static> {
    callback: Option<Box<dyn FnOnce(Result<T>) + Send>>,
}

impl<T: 'static> Completion<T> {
    pub(crate) fn new(callback: Option<Box<dyn FnOnce(Result<T>) + Send>>) -> Self {
        Self { callback }
    }

    pub(crate) fn complete(mut self, result: Result<T>) {
        if let Some(cb) = self.callback.take() {
            run_callback(cb, result);
        }
    }
}

/// Runs a user's completion callback; a panic in it is caught and logged, so
/// it can never unwind through the loop (or the thread) that answers it.
fn run_callback<T>(cb: Box<dyn FnOnce(Result<T>) + Send>, result: Result<T>) {
    if catch_unwind(AssertUnwindSafe(move || cb(result))).is_err() {
        log::error!("a completion callback panicked");
    }
}

impl<T: 'static> Drop for Completion<T> {
    fn drop(&mut self) {
        if let Some(cb) = self.callback.take() {
            run_callback(cb, Err(Error::EngineStopped));
        }
    }
}

/// What an event loop's mailbox carries.
pub(crate) enum LoopMessage {
    /// The acceptor hands over a new connection.
    Accepted {
        fd: OwnedFd,
        peer: SockAddr,
        listener: u16,
        is_tcp: bool,
        /// Its place under the engine's limits (given back when dropped).
        admission: crate::admission::Admission,
    },
    /// Write bytes to a connection.
    Write {
        id: ConnId,
        data: Vec<u8>,
        done: Completion<usize>,
    },
    /// Write several buffers to a connection, in order.
    Writev {
        id: ConnId,
        bufs: Vec<Vec<u8>>,
        done: Completion<usize>,
    },
    /// Send a datagram from the loop's UDP socket `socket` to `peer`.
    SendTo {
        socket: u32,
        /// Boxed: keeps every mailbox slot small.
        peer: Box<SockAddr>,
        data: Vec<u8>,
        done: Completion<usize>,
    },
    /// Dial `addr` onto this loop; `done` gets the new connection's handle.
    Dial {
        addr: Box<ListenAddr>,
        done: Completion<ConnHandle>,
        /// For `tls://`: how to verify the server, if not the engine's way.
        tls: Option<Box<TlsConnector>>,
        /// The new connection's initial state.
        state: Option<InitialState>,
    },
    /// Adopt an already-connected socket.
    Enroll {
        fd: OwnedFd,
        done: Completion<ConnHandle>,
        /// The connection's initial state.
        state: Option<InitialState>,
    },
    /// Run the traffic callback even without new bytes.
    Wake { id: ConnId },
    /// Close a connection.
    Close { id: ConnId, done: Completion<()> },
    /// Pause (`on: false`) or resume (`on: true`) reading a connection.
    Reading { id: ConnId, on: bool },
    /// Run a closure on the loop.
    Execute(LoopTask),
    /// Wake up and look at the engine's stop flag.
    Stop,
}

impl fmt::Debug for LoopMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accepted { peer, listener, .. } => {
                write!(f, "Accepted({peer}, listener {listener})")
            }
            Self::Write { id, data, .. } => write!(f, "Write({id:?}, {} bytes)", data.len()),
            Self::Writev { id, bufs, .. } => write!(f, "Writev({id:?}, {} buffers)", bufs.len()),
            Self::SendTo { peer, data, .. } => write!(f, "SendTo({peer}, {} bytes)", data.len()),
            Self::Dial { addr, .. } => write!(f, "Dial({addr})"),
            Self::Enroll { .. } => f.write_str("Enroll"),
            Self::Wake { id } => write!(f, "Wake({id:?})"),
            Self::Close { id, .. } => write!(f, "Close({id:?})"),
            Self::Reading { id, on } => write!(f, "Reading({id:?}, {on})"),
            Self::Execute(_) => f.write_str("Execute"),
            Self::Stop => f.write_str("Stop"),
        }
    }
}

/// What the acceptor's mailbox carries.
#[derive(Debug)]
pub(crate) enum AcceptorMessage {
    /// Wake up and look at the engine's stop flag.
    Stop,
}

#[cfg(test)]
mod tests {
    #[test]
    fn loop_messages_stay_small() {
        // Every mailbox slot has this size; keep it within one cache line.
        assert!(
            std::mem::size_of::<super::LoopMessage>() <= 64,
            "{}",
            std::mem::size_of::<super::LoopMessage>()
        );
    }
}
