//! [`EngineHandle`]: the handle to an engine, usable from any thread. (The
//! settings and binding are in `builder.rs`, running it in `server.rs`, the
//! state it shares in `runtime`.)
//!
//! Owns only the public methods of the handle: each one asks the shared
//! state (`runtime::EngineShared`) or sends a message to a loop. It must
//! never touch a connection (only loops do) and never block a loop thread:
//! requests made on a loop thread that find a lane full wait in a
//! per-thread overflow that the loop flushes on its next turn. How the
//! engine shuts down is described in `server.rs` ([`Engine::run`]).

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread;

use crate::addr::ListenAddr;
use crate::admission::AdmissionStats;
use crate::error::{Error, Result};
use crate::handle::{ConnHandle, Pending};
use crate::id::ConnId;
use crate::runtime::context;
use crate::runtime::lifecycle::RunState;
use crate::runtime::message::{Completion, InitialState, LoopContext, LoopMessage};
use crate::runtime::worker_pool::{SubmitError, WorkerPool};
use crate::stats::LoopStats;
use crate::to_addr::ToAddr;
#[cfg(doc)]
use crate::{Engine, EngineBuilder};

pub use crate::runtime::EngineHandle;

impl EngineHandle {
    /// The I/O driver this engine's loops run on: [`Backend::Epoll`] or
    /// [`Backend::IoUring`] (never `Auto`, which is resolved when the
    /// engine is built).
    ///
    /// [`Backend::Epoll`]: crate::Backend::Epoll
    /// [`Backend::IoUring`]: crate::Backend::IoUring
    pub fn backend(&self) -> crate::Backend {
        self.shared.backend()
    }

    /// Connections currently open on all loops.
    pub fn connection_count(&self) -> usize {
        self.shared.connection_count()
    }

    /// Number of event loops.
    pub fn loop_count(&self) -> usize {
        self.shared.loop_count()
    }

    /// The addresses the engine listens on, with the real ports.
    pub fn local_addrs(&self) -> &[ListenAddr] {
        self.shared.local_addrs()
    }

    /// `true` once a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// The engine's worker pool (see [`WorkerPool`]), started on first use
    /// with the builder's [`workers`](EngineBuilder::workers) settings.
    pub fn worker_pool(&self) -> Result<&WorkerPool> {
        self.shared.pool()
    }

    /// Runs `job` on the worker pool, off the loops. Never waits: if the job
    /// queue is full (or the engine stopping) the job is handed back, with
    /// its [`SubmitErrorKind`](crate::SubmitErrorKind) — which says how a
    /// handler should react (neither is a reason to close the connection).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").workers(2).build()?;
    /// let engine = server.handle();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// engine.submit(move || tx.send(6 * 7).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 42);
    /// engine.stop();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), SubmitError> {
        match self.shared.pool() {
            Ok(pool) => pool.submit(job),
            Err(_) => Err(SubmitError::stopped(Box::new(job))),
        }
    }

    /// Stops the engine: stop accepting, finish the worker pool's queued jobs,
    /// close every connection (each close callback runs), join every thread;
    /// then returns. Idempotent. Called from inside a handler (a loop thread)
    /// or a worker-pool job it only starts the stop, since a thread cannot
    /// wait for itself; [`Engine::run`] returns once done. Nothing in a stop
    /// can fail, so it returns nothing; errors the engine met while running
    /// are what [`Engine::run`] returns.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// engine.stop(); // every thread has finished when this returns
    /// engine.stop(); // idempotent
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn stop(&self) {
        self.shared.request_stop();
        if self.shared.on_own_loop_thread() || context::on_worker() {
            return;
        }
        let lifecycle = self.shared.lifecycle();
        if lifecycle.state() == RunState::Built {
            // A server that was never run: nobody else will join the pool.
            self.shared.shutdown_pool();
        }
        lifecycle.wait_until_finished();
    }

    /// Like [`stop`](Self::stop), giving connections at most `drain` to flush
    /// what is queued for them before they are closed hard (the default is the
    /// builder's [`drain_timeout`](EngineBuilder::drain_timeout)).
    pub fn stop_with_timeout(&self, drain: std::time::Duration) {
        self.shared.lifecycle().set_drain_timeout(drain);
        self.stop()
    }

    /// Dials `addr` (`tcp://…`, `unix://…`, `udp://…`) without blocking
    /// anyone: the connect runs on the loop with the fewest connections, the
    /// handler's `on_open` runs once connected, and the returned [`Pending`]
    /// completes with the connection's handle — or with the error (refused,
    /// unreachable, timed out after the builder's
    /// [`connect_timeout`](EngineBuilder::connect_timeout)). Block on it with
    /// [`Pending::wait`] or `.await` it.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.handle();
    /// let addr = engine.local_addrs()[0].to_string();
    /// let runner = std::thread::spawn(move || server.run());
    /// let handle = engine.dial(&addr).wait()?; // a connection to itself
    /// assert_eq!(handle.write(b"hi".to_vec()).wait()?, 2);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn dial(&self, addr: impl ToAddr) -> Pending<ConnHandle> {
        self.dial_on(self.least_loaded_loop(), addr)
    }

    /// Like [`dial`](Self::dial), the new connection starting with `state`
    /// (as [`Conn::dial`](crate::Conn::dial) gives it), so its `on_open`
    /// already has it. `S` must be the handler's
    /// [`State`](crate::EventHandler::State) type; if it is not, the dial
    /// fails with [`Error::InvalidConfig`]. If the dial fails, the state is
    /// dropped (this caller hears of it, not `on_dial_error`).
    pub fn dial_with<S: Send + 'static>(&self, addr: impl ToAddr, state: S) -> Pending<ConnHandle> {
        self.dial_state_on(self.least_loaded_loop(), addr, Some(Box::new(state)))
    }

    /// Like [`dial`](Self::dial), onto loop `index`.
    pub fn dial_on(&self, index: usize, addr: impl ToAddr) -> Pending<ConnHandle> {
        self.dial_state_on(index, addr, None)
    }

    fn dial_state_on(
        &self,
        index: usize,
        addr: impl ToAddr,
        state: Option<InitialState>,
    ) -> Pending<ConnHandle> {
        let (done, pending) = self.handle_completion();
        match addr.to_listen_addr() {
            Ok(addr) => {
                let message = LoopMessage::Dial {
                    addr: Box::new(addr),
                    done,
                    tls: None,
                    state,
                };
                // On failure the message is dropped, which answers `done`.
                let _ = self.shared.send_to_loop(index, message);
            }
            Err(e) => done.complete(Err(e)),
        }
        pending
    }

    /// Dials a `tls://` address, verifying the server with `connector` (its
    /// client config and server name) instead of the builder's
    /// [`tls_client`](EngineBuilder::tls_client) config. The [`Pending`]
    /// completes once the handshake is done (`on_open` has run), or with
    /// the error: [`Error::Tls`] for a certificate that is untrusted or not
    /// valid for the name, or an alert from the server.
    ///
    /// ```no_run
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::tls::{client_config, TlsConnector};
    /// let ca = std::fs::read("ca.pem")?;
    /// let connector = TlsConnector::new(client_config(&ca)?).server_name("backend.internal")?;
    /// let server = Engine::builder(|_| Quiet).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// match engine.dial_tls("tls://10.0.0.7:443", connector).wait() {
    ///     Ok(handle) => drop(handle.write(b"hello".to_vec())),
    ///     Err(ringloop::Error::Tls(e)) => eprintln!("refused the server: {e}"),
    ///     Err(e) => eprintln!("could not connect: {e}"),
    /// }
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial_tls(
        &self,
        addr: impl ToAddr,
        connector: crate::tls::TlsConnector,
    ) -> Pending<ConnHandle> {
        let (done, pending) = self.handle_completion();
        match addr.to_listen_addr() {
            Ok(addr) if !addr.is_tls() => done.complete(Err(Error::invalid_address(
                &addr.to_string(),
                "dial_tls needs a tls:// address",
            ))),
            Ok(addr) => {
                let message = LoopMessage::Dial {
                    addr: Box::new(addr),
                    done,
                    tls: Some(Box::new(connector)),
                    state: None,
                };
                let _ = self.shared.send_to_loop(self.least_loaded_loop(), message);
            }
            Err(e) => done.complete(Err(e)),
        }
        pending
    }

    /// Hands an already-connected stream socket (`std::net::TcpStream`,
    /// `std::os::unix::net::UnixStream`, or any connected stream fd) to the
    /// loop with the fewest connections; `on_open` runs there and the
    /// [`Pending`] completes with its handle.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.handle();
    /// let addr = engine.local_addrs()[0].sock_addr().as_inet().unwrap();
    /// let runner = std::thread::spawn(move || server.run());
    /// // A socket connected elsewhere (here: to the engine itself), handed over.
    /// let stream = std::net::TcpStream::connect(addr)?;
    /// let handle = engine.enroll(stream).wait()?;
    /// assert_eq!(handle.write("hi").wait()?, 2);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enroll(&self, socket: impl Into<OwnedFd>) -> Pending<ConnHandle> {
        self.enroll_state(socket.into(), None)
    }

    /// Like [`enroll`](Self::enroll), the connection starting with `state`
    /// (so its `on_open` already has it). `S` must be the handler's
    /// [`State`](crate::EventHandler::State) type; if it is not, the enroll
    /// fails with [`Error::InvalidConfig`] (and the socket is closed).
    pub fn enroll_with<S: Send + 'static>(
        &self,
        socket: impl Into<OwnedFd>,
        state: S,
    ) -> Pending<ConnHandle> {
        self.enroll_state(socket.into(), Some(Box::new(state)))
    }

    fn enroll_state(&self, fd: OwnedFd, state: Option<InitialState>) -> Pending<ConnHandle> {
        let (done, pending) = self.handle_completion();
        let message = LoopMessage::Enroll { fd, done, state };
        let _ = self.shared.send_to_loop(self.least_loaded_loop(), message);
        pending
    }

    /// A completion for a dial or an enroll (answered with the new
    /// connection's id on its loop) and the [`Pending`] that gets its handle.
    fn handle_completion(&self) -> (Completion<ConnId>, Pending<ConnHandle>) {
        let (tx, rx) = flume::bounded(1);
        // Weak: the message carrying the completion may sit in a mailbox
        // that this engine's state owns; it must not keep the state alive.
        let engine = Arc::downgrade(&self.shared);
        let done = Completion::new(Some(Box::new(move |r: Result<ConnId>| {
            let handle = r.and_then(|id| {
                let engine = engine.upgrade().ok_or(Error::EngineStopped)?;
                Ok(ConnHandle::new(id, engine))
            });
            let _ = tx.send(handle);
        })));
        (done, Pending { rx })
    }

    /// A handle to connection `id` (as seen in a callback with
    /// [`Conn::id`](crate::Conn::id)). If that connection has closed, the
    /// handle's requests are refused with `ConnectionClosed`.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.handle();
    /// let addr = engine.local_addrs()[0].to_string();
    /// let runner = std::thread::spawn(move || server.run());
    /// let id = engine.dial(&addr).wait()?.id(); // keep only the id…
    /// let handle = engine.handle(id); // …and make a handle again when needed
    /// assert_eq!(handle.write("hi").wait()?, 2);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn handle(&self, id: ConnId) -> ConnHandle {
        ConnHandle::new(id, self.shared.clone())
    }

    fn least_loaded_loop(&self) -> usize {
        self.shared.least_loaded_loop()
    }

    /// Counters of every loop, by loop index.
    pub fn stats(&self) -> Vec<LoopStats> {
        (0..self.shared.loop_count())
            .map(|i| self.shared.stats_of(i))
            .collect()
    }

    /// Counters of all loops summed.
    pub fn total_stats(&self) -> LoopStats {
        self.stats().into_iter().sum()
    }

    /// The awaitable form of [`stop`](Self::stop): starts the stop and returns
    /// a [`Pending`] that completes once the engine has finished.
    pub fn stop_pending(&self) -> Pending<()> {
        self.shared.request_stop();
        let (tx, rx) = flume::bounded(1);
        let engine = self.clone();
        thread::Builder::new()
            .name("ringloop-stop".into())
            .spawn(move || {
                engine.stop();
                let _ = tx.send(Ok(()));
            })
            .map(drop)
            .unwrap_or_else(|e| log::error!("could not start the stop waiter: {e}"));
        Pending { rx }
    }

    /// Runs `task` on loop `index` (with that loop's [`LoopContext`]).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// let engine = server.handle();
    /// let runner = std::thread::spawn(move || server.run());
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// engine.execute(1, move |ctx| tx.send(ctx.loop_index()).unwrap())?;
    /// assert_eq!(rx.recv().unwrap(), 1); // it ran on loop 1
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn execute(
        &self,
        index: usize,
        task: impl FnOnce(&mut LoopContext) + Send + 'static,
    ) -> Result<()> {
        if index >= self.shared.loop_count() {
            return Err(Error::InvalidConfig(format!("no loop {index}")));
        }
        self.shared
            .send_to_loop(index, LoopMessage::Execute(Box::new(task)))
    }

    /// Runs a copy of `task` on every loop.
    pub fn execute_all(
        &self,
        task: impl Fn(&mut LoopContext) + Send + Sync + 'static,
    ) -> Result<()> {
        let task = Arc::new(task);
        for index in 0..self.shared.loop_count() {
            let task = task.clone();
            self.shared
                .send_to_loop(index, LoopMessage::Execute(Box::new(move |ctx| task(ctx))))?;
        }
        Ok(())
    }
}

impl fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineHandle")
            .field("loops", &self.shared.loop_count())
            .field("addrs", &self.shared.local_addrs())
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

impl EngineHandle {
    /// `true` once this engine handed its listeners to a new process (see
    /// [`EngineBuilder::upgrade_socket`]): it accepts nothing more and will
    /// stop when its connections have closed. A protocol can use it to
    /// finish the request in hand and close at a message boundary.
    pub fn is_draining(&self) -> bool {
        self.shared.deploy().is_draining()
    }
}

impl EngineHandle {
    /// What admission control did so far: connections admitted, open under
    /// the cap, pauses at the cap or the rate, refusals.
    pub fn admission_stats(&self) -> AdmissionStats {
        self.shared.deploy().gate.stats()
    }
}
