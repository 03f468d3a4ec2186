//! [`ConnHandle`]: a connection seen from any thread, and [`ConnId`], its
//! identity (loop, slot, generation).
//!
//! Owns only the cross-thread requests: each method turns into one message to
//! the loop that owns the connection. It must never touch the connection
//! itself; the loop checks the generation, so a request for a connection that
//! closed (and whose slot a newer connection reuses) is refused with
//! [`Error::ConnectionClosed`] and never reaches the newcomer.
//!
//! # Ordering
//!
//! Requests to one connection are applied in **causal order**, whatever
//! threads send them: if one request's call happens-before another's, the
//! first is applied first. That covers requests sent from one thread (in the
//! order sent), and requests from different threads ordered by anything that
//! synchronises them: a worker's `async_write` returns and it sets a flag
//! (`Release`); the loop or another thread sees the flag (`Acquire`) and then
//! writes, wakes or closes; the write is applied first. (Each thread has its
//! own lane into each loop; the loop's mailbox orders the lanes by ticket,
//! see `ringloop_actors::Mailbox`.) Requests that nothing orders are
//! interleaved in an unspecified order.
//!
//! One exception: a request made *on a loop thread* that finds the target
//! loop's lane full waits in that thread's overflow (a loop never blocks)
//! and takes its place in the causal order when the loop flushes it, on its
//! next turn. Until then, a request another thread makes after learning that
//! the call returned can be applied first. Requests from that loop thread
//! itself still keep their order.
//!
//! # Completions
//!
//! Every callback runs exactly once: on the owning loop with the outcome, or
//! (if the request could not be delivered because the engine stopped) with
//! [`Error::EngineStopped`], on whichever thread finds out.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::runtime::message::{Completion, LoopMessage};
use crate::runtime::EngineShared;

/// A `Send + Sync + Clone` handle to a connection, usable from any thread
/// (worker threads, timers, other loops). Get one with
/// [`Conn::handle`](crate::Conn::handle). See the module docs for ordering and
/// completion guarantees.
///
/// ```
/// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
/// # use std::{io::Read, net::TcpStream, sync::mpsc};
/// # struct Give(mpsc::Sender<ConnHandle>);
/// # impl EventHandler for Give {
/// #     type State = ();
/// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
/// #         let _ = self.0.send(conn.handle());
/// #         Action::None
/// #     }
/// # }
/// # let (tx, rx) = mpsc::channel();
/// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// # let engine = server.handle();
/// # let runner = std::thread::spawn(move || server.run());
/// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// # let handle: ConnHandle = rx.recv().unwrap();
/// // `handle` is the server's side of `client` (sent out by `on_open`).
/// // Handles are Send + Sync + Clone: write from another thread.
/// let h = handle.clone();
/// std::thread::spawn(move || h.write(b"from a thread".to_vec()).wait()).join().unwrap()?;
/// let mut buf = [0; 13];
/// client.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"from a thread");
/// # drop(client);
/// # engine.stop();
/// # runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ConnHandle {
    id: ConnId,
    engine: Arc<EngineShared>,
}

/// A [`ConnHandle::try_async_write`] that could not be queued; the data is
/// handed back.
///
/// ```
/// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
/// # use std::{io::Read, net::TcpStream, sync::mpsc};
/// # struct Give(mpsc::Sender<ConnHandle>);
/// # impl EventHandler for Give {
/// #     type State = ();
/// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
/// #         let _ = self.0.send(conn.handle());
/// #         Action::None
/// #     }
/// # }
/// # let (tx, rx) = mpsc::channel();
/// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// # let engine = server.handle();
/// # let runner = std::thread::spawn(move || server.run());
/// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// # let handle: ConnHandle = rx.recv().unwrap();
/// // `handle` is the server's side of `client` (sent out by `on_open`).
/// match handle.try_async_write(b"ping".to_vec()) {
///     Ok(()) => {}
///     Err(e) => {
///         // The bytes come back: keep them for later, or give up.
///         eprintln!("{e}; {} bytes handed back", e.data.len());
///     }
/// }
/// # drop(client);
/// # engine.stop();
/// # runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct TryWriteError {
    /// The bytes that were not queued.
    pub data: Vec<u8>,
    /// [`Error::EngineStopped`], or [`Error::MailboxFull`] when the loop's
    /// mailbox lane for this thread is full (try again later).
    pub error: Error,
}

impl fmt::Display for TryWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "async write of {} bytes not queued: {}",
            self.data.len(),
            self.error
        )
    }
}

impl std::error::Error for TryWriteError {}

impl ConnHandle {
    pub(crate) fn new(id: ConnId, engine: Arc<EngineShared>) -> Self {
        Self { id, engine }
    }

    /// Builds the message that writes `data` to the connection.
    fn write_message(&self, data: Vec<u8>, done: Completion<usize>) -> LoopMessage {
        LoopMessage::Write {
            id: self.id,
            data,
            done,
        }
    }

    /// The connection's identity.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let id = handle.id();
    /// // Store the id, rebuild a handle later from the engine.
    /// let again = engine.handle(id);
    /// assert_eq!(again.id(), id);
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> ConnId {
        self.id
    }

    fn send(&self, message: LoopMessage) -> Result<()> {
        self.engine
            .send_to_loop(self.id.loop_index as usize, message)
    }

    /// Writes `data` on the owning loop. `on_done` runs there with
    /// `Ok(data.len())` once the bytes are written or queued on the
    /// connection, or with the error (the connection closed, the engine
    /// stopped). Waits for room if this thread's lane into the loop is full
    /// (never on a loop thread, which queues locally instead). Returns an
    /// error only if the request could not be delivered; `on_done` runs in
    /// every case.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let (done_tx, done_rx) = mpsc::channel();
    /// handle.async_write(&b"hello"[..], move |r| {
    ///     let _ = done_tx.send(r); // runs on the loop
    /// })?;
    /// assert_eq!(done_rx.recv().unwrap()?, 5);
    /// let mut buf = [0; 5];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"hello");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn async_write(
        &self,
        data: impl Into<Vec<u8>>,
        on_done: impl FnOnce(Result<usize>) + Send + 'static,
    ) -> Result<()> {
        self.send(self.write_message(data.into(), Completion::new(Some(Box::new(on_done)))))
    }

    /// Like [`async_write`](Self::async_write) without a callback, but never
    /// waits: if the lane is full the data is handed back.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let mut data = b"tick\n".to_vec();
    /// loop {
    ///     match handle.try_async_write(data) {
    ///         Ok(()) => break,
    ///         Err(e) if matches!(e.error, ringloop::Error::MailboxFull) => {
    ///             data = e.data; // the lane is full: try again shortly
    ///             std::thread::yield_now();
    ///         }
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// let mut buf = [0; 5];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"tick\n");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_async_write(&self, data: Vec<u8>) -> Result<(), TryWriteError> {
        let message = self.write_message(data, Completion::new(None));
        self.engine
            .try_send_to_loop(self.id.loop_index as usize, message)
            .map_err(|(message, error)| match message {
                LoopMessage::Write { data, .. } => TryWriteError { data, error },
                _ => unreachable!("try_send_to_loop hands back the message it was given"),
            })
    }

    /// Writes several buffers, in order, with one message (and one `writev`
    /// on the loop when the socket takes them).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let (done_tx, done_rx) = mpsc::channel();
    /// let bufs = vec![b"head:".to_vec(), b"body".to_vec()];
    /// handle.async_writev(bufs, move |r| {
    ///     let _ = done_tx.send(r);
    /// })?;
    /// assert_eq!(done_rx.recv().unwrap()?, 9);
    /// let mut buf = [0; 9];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"head:body");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn async_writev(
        &self,
        bufs: Vec<Vec<u8>>,
        on_done: impl FnOnce(Result<usize>) + Send + 'static,
    ) -> Result<()> {
        self.send(LoopMessage::Writev {
            id: self.id,
            bufs,
            done: Completion::new(Some(Box::new(on_done))),
        })
    }

    /// An awaitable [`async_write`](Self::async_write): block on the result
    /// with [`Pending::wait`] or `.await` it.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let written = handle.write("hi").wait()?; // blocks until written or queued
    /// assert_eq!(written, 2);
    /// let mut buf = [0; 2];
    /// client.read_exact(&mut buf)?;
    /// assert_eq!(&buf, b"hi");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&self, data: impl Into<Vec<u8>>) -> Pending<usize> {
        let (tx, rx) = flume::bounded(1);
        let _ = self.async_write(data, move |r| {
            let _ = tx.send(r);
        });
        Pending { rx }
    }

    /// Runs [`EventHandler::on_wake`](crate::EventHandler::on_wake) on the
    /// owning loop (for example to process what a worker left in the
    /// connection's state): once per call that returns `Ok`, in order with
    /// this thread's other requests. A wake for a closed connection is
    /// ignored.
    ///
    /// ```
    /// use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// use std::sync::mpsc;
    ///
    /// /// Replies to a wake with "woken".
    /// struct Wakeable(mpsc::Sender<ConnHandle>);
    /// impl EventHandler for Wakeable {
    ///     type State = ();
    ///     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let _ = self.0.send(conn.handle());
    ///         Action::None
    ///     }
    ///     fn on_wake(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    ///         let _ = conn.write(b"woken");
    ///         Action::None
    ///     }
    /// }
    ///
    /// let (tx, rx) = mpsc::channel();
    /// let server = Engine::builder(move |_| Wakeable(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let mut client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// let handle = rx.recv().unwrap();
    ///
    /// handle.wake()?;
    /// let mut buf = [0; 5];
    /// std::io::Read::read_exact(&mut client, &mut buf)?;
    /// assert_eq!(&buf, b"woken");
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wake(&self) -> Result<()> {
        self.send(LoopMessage::Wake { id: self.id })
    }

    /// Pauses reading the connection, as
    /// [`Conn::pause_reading`](crate::Conn::pause_reading), from any thread.
    pub fn pause_reading(&self) -> Result<()> {
        self.send(LoopMessage::Reading {
            id: self.id,
            on: false,
        })
    }

    /// Resumes reading the connection after
    /// [`Conn::pause_reading`](crate::Conn::pause_reading), from any thread;
    /// if unconsumed input is waiting, `on_traffic` runs for it. Applied in
    /// order with this thread's other requests to the connection (an
    /// `async_write` sent before it is applied first).
    pub fn resume_reading(&self) -> Result<()> {
        self.send(LoopMessage::Reading {
            id: self.id,
            on: true,
        })
    }

    /// Closes the connection (its close callback runs with
    /// [`CloseReason::Requested`](crate::CloseReason::Requested)). Closing a
    /// closed connection is a no-op. What is queued for the peer is written
    /// as far as the socket takes it at once (and a TLS connection's
    /// `close_notify` after it); on io_uring, with a send of the connection
    /// still in the ring, the close waits for the queue to go out first (at
    /// most the engine's drain timeout).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// handle.close()?;
    /// let mut rest = Vec::new();
    /// client.read_to_end(&mut rest)?; // the server side closed: end of stream
    /// assert!(rest.is_empty());
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<()> {
        self.send(LoopMessage::Close {
            id: self.id,
            done: Completion::new(None),
        })
    }

    /// Like [`close`](Self::close); `on_done` runs on the loop with `Ok(())`
    /// once closed, or `Err(ConnectionClosed)` if it already was.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let (done_tx, done_rx) = mpsc::channel();
    /// handle.close_with(move |r| {
    ///     let _ = done_tx.send(r);
    /// })?;
    /// assert!(done_rx.recv().unwrap().is_ok());
    /// // Later requests through the handle are refused.
    /// assert!(matches!(handle.write("late").wait(), Err(ringloop::Error::ConnectionClosed)));
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close_with(&self, on_done: impl FnOnce(Result<()>) + Send + 'static) -> Result<()> {
        self.send(LoopMessage::Close {
            id: self.id,
            done: Completion::new(Some(Box::new(on_done))),
        })
    }
}

impl fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnHandle").field("id", &self.id).finish()
    }
}

/// The result of a request that completes later on a loop: block on it with
/// [`wait`](Self::wait) or `.await` it.
///
/// ```
/// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
/// # use std::{io::Read, net::TcpStream, sync::mpsc};
/// # struct Give(mpsc::Sender<ConnHandle>);
/// # impl EventHandler for Give {
/// #     type State = ();
/// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
/// #         let _ = self.0.send(conn.handle());
/// #         Action::None
/// #     }
/// # }
/// # let (tx, rx) = mpsc::channel();
/// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// # let engine = server.handle();
/// # let runner = std::thread::spawn(move || server.run());
/// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
/// # let handle: ConnHandle = rx.recv().unwrap();
/// // `handle` is the server's side of `client` (sent out by `on_open`).
/// // Block with `wait`, or `.await` it in async code.
/// let pending = handle.write("ok");
/// assert_eq!(pending.wait()?, 2);
/// # drop(client);
/// # engine.stop();
/// # runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "a Pending does nothing unless waited on"]
pub struct Pending<T> {
    pub(crate) rx: flume::Receiver<Result<T>>,
}

impl<T: Send + 'static> Pending<T> {
    /// Blocks until the result is in.
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// assert_eq!(handle.write("ok").wait()?, 2);
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait(self) -> Result<T> {
        self.rx.recv().unwrap_or(Err(Error::EngineStopped))
    }

    /// Blocks until the result is in or `timeout` passes (then `None`).
    ///
    /// ```
    /// # use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};
    /// # use std::{io::Read, net::TcpStream, sync::mpsc};
    /// # struct Give(mpsc::Sender<ConnHandle>);
    /// # impl EventHandler for Give {
    /// #     type State = ();
    /// #     fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
    /// #         let _ = self.0.send(conn.handle());
    /// #         Action::None
    /// #     }
    /// # }
    /// # let (tx, rx) = mpsc::channel();
    /// # let server = Engine::builder(move |_| Give(tx.clone())).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # let engine = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// # let mut client = TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// # let handle: ConnHandle = rx.recv().unwrap();
    /// // `handle` is the server's side of `client` (sent out by `on_open`).
    /// let pending = handle.write("ok");
    /// match pending.wait_timeout(std::time::Duration::from_secs(5)) {
    ///     Some(result) => assert_eq!(result?, 2),
    ///     None => panic!("the loop did not answer in 5 s"),
    /// }
    /// # drop(client);
    /// # engine.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T>> {
        match self.rx.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(flume::RecvTimeoutError::Timeout) => None,
            Err(flume::RecvTimeoutError::Disconnected) => Some(Err(Error::EngineStopped)),
        }
    }
}

impl<T: Send + 'static> IntoFuture for Pending<T> {
    type Output = Result<T>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            self.rx
                .recv_async()
                .await
                .unwrap_or(Err(Error::EngineStopped))
        })
    }
}
