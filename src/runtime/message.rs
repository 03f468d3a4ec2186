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
use crate::id::ConnId;
use crate::runtime::EngineHandle;
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
    /// Dial `addr` onto this loop; `done` gets the new connection's id.
    Dial {
        addr: Box<ListenAddr>,
        done: Completion<ConnId>,
        /// For `tls://`: how to verify the server, if not the engine's way.
        tls: Option<Box<TlsConnector>>,
        /// The new connection's initial state.
        state: Option<InitialState>,
    },
    /// Adopt an already-connected socket.
    Enroll {
        fd: OwnedFd,
        done: Completion<ConnId>,
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

/// What a handler can see of the loop it runs on, in the callbacks that have
/// no connection: [`on_boot`](crate::EventHandler::on_boot),
/// [`on_tick`](crate::EventHandler::on_tick), [`on_shutdown`](crate::EventHandler::on_shutdown).
///
/// ```
/// use ringloop::{Action, Engine, EventHandler, LoopContext};
/// use std::sync::mpsc;
///
/// struct Boot(mpsc::Sender<usize>);
/// impl EventHandler for Boot {
///     type State = ();
///     fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
///         let _ = self.0.send(ctx.loop_index());
///         Action::None
///     }
/// }
///
/// let (tx, rx) = mpsc::channel();
/// let server = Engine::builder(move |_| Boot(tx.clone())).listen("tcp://127.0.0.1:0").loops(2).build()?;
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// let mut booted = [rx.recv().unwrap(), rx.recv().unwrap()];
/// booted.sort();
/// assert_eq!(booted, [0, 1]);
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Debug)]
pub struct LoopContext {
    pub(crate) index: usize,
    pub(crate) engine: EngineHandle,
}

impl LoopContext {
    /// The index of this loop (0-based).
    ///
    /// ```
    /// # use ringloop::{Action, EventHandler, LoopContext};
    /// # struct H;
    /// # impl EventHandler for H {
    /// #     type State = ();
    /// fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
    ///     log::info!("loop {} of {} is up", ctx.loop_index(), ctx.engine().loop_count());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn loop_index(&self) -> usize {
        self.index
    }

    /// A handle to the engine (connection count, stop).
    ///
    /// ```
    /// use ringloop::{Action, Engine, EventHandler, LoopContext};
    /// use std::time::Duration;
    ///
    /// /// Stops the engine on its first tick.
    /// struct OneTick;
    /// impl EventHandler for OneTick {
    ///     type State = ();
    ///     fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
    ///         assert_eq!(ctx.engine().connection_count(), 0);
    ///         ctx.engine().stop(); // on a loop thread: starts the stop
    ///         (Duration::from_secs(1), Action::None)
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| OneTick).listen("tcp://127.0.0.1:0").loops(1).ticker(true).build()?;
    /// server.run()?; // returns once the tick has stopped the engine
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
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
