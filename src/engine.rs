//! The engine: [`EngineBuilder`] (settings, binding), [`Server`] (a bound
//! engine ready to run) and [`Engine`] (a handle usable from any thread).
//!
//! Owns the actors' wiring and lifecycle: it creates every mailbox before any
//! thread starts, starts one thread per event loop plus the acceptor, and joins
//! them. It must never touch a connection (only loops do) and never block a
//! loop thread: requests made on a loop thread that find a lane full wait in a
//! per-thread overflow that the loop flushes on its next turn.
//!
//! # Shutdown
//!
//! [`Engine::stop`] (any thread) or [`Action::Shutdown`](crate::Action::Shutdown)
//! (a handler) sets the stop flag and wakes the thread in [`Server::run`],
//! which then stops the actors in order:
//!
//! 1. the acceptor closes its listeners (no new connections);
//! 2. the worker pool refuses new jobs, finishes (or cancels, per
//!    [`PoolShutdown`]) the queued ones and joins, waiting at most
//!    [`Options::pool_shutdown_timeout`]; loops keep serving
//!    meanwhile, so the replies of finished jobs reach their connections;
//! 3. each loop applies the messages already queued to it, closes every
//!    connection (each close callback runs once), runs `on_shutdown` and exits.
//!
//! Then `run` returns.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::acceptor::Acceptor;
use crate::actors::{CachePadded, Mailbox, MailboxConfig, SharedSender, TrySendError};
use crate::addr::{ListenAddr, Transport};
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::handle::{ConnHandle, ConnId, Pending};
use crate::handler::{EventHandler, LoopContext};
use crate::listener::{Listener, LoopSockets};
use crate::message::Completion;
use crate::message::{AcceptorMessage, InitialState, LoopMessage};
use crate::options::{BackPressure, KeepAlive, LoadBalancer, Options, Timeouts, WaterMarks};
use crate::stats::{LoopCounters, LoopStats};
use crate::to_addr::ToAddr;
use crate::worker_pool::{PoolShutdown, SubmitError, WorkerPool};
use std::os::fd::OwnedFd;

/// One loop as the rest of the engine sees it.
pub(crate) struct LoopSlot {
    pub(crate) sender: SharedSender<LoopMessage>,
    /// Connections assigned to the loop (counted from hand-off to close).
    pub(crate) connections: CachePadded<AtomicUsize>,
    /// Written by the loop only; read by [`Engine::stats`].
    pub(crate) counters: CachePadded<LoopCounters>,
}

impl LoopSlot {
    /// One more connection assigned to the loop.
    pub(crate) fn add_connection(&self) {
        // Relaxed: a counter, read only as an estimate (balancing, stats).
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// One connection fewer (closed, or never registered).
    pub(crate) fn remove_connection(&self) {
        // Relaxed: as in `add_connection`.
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Built,
    Running,
    Finished,
}

/// What every actor and handle of one engine shares.
pub(crate) struct EngineShared {
    pub(crate) loops: Vec<LoopSlot>,
    acceptor: Option<SharedSender<AcceptorMessage>>,
    /// A stop was requested (phase 1 and 2 start).
    stopping: AtomicBool,
    /// The loops must close their connections and exit (phase 3).
    loops_stopping: AtomicBool,
    /// Guards the run state; `finished` and `stop_requested` wait on it.
    run_state: Mutex<RunState>,
    stop_requested: Condvar,
    finished: Condvar,
    first_error: Mutex<Option<Error>>,
    addrs: Vec<ListenAddr>,
    /// Started on first use (fallible, hence once_cell rather than std).
    pool: once_cell::sync::OnceCell<WorkerPool>,
    pool_config: (usize, usize, PoolShutdown),
    /// How long a stop waits for the worker pool.
    pool_shutdown_timeout: std::time::Duration,
    /// Bytes buffered by all connections, against the budget.
    pub(crate) budget: crate::budget::SharedBudget,
    /// How long loops may spend flushing at stop (ms; set before the stop).
    drain_timeout_ms: AtomicU64,
    /// Admission control and PROXY protocol listeners.
    pub(crate) deploy: crate::deploy::DeployShared,
}

/// `true` on any engine's event-loop thread.
pub(crate) fn on_a_loop_thread() -> bool {
    LOOP_THREAD.with(|t| t.borrow().is_some())
}

thread_local! {
    /// On an event loop's thread: which engine it serves, and the requests it
    /// made to loops whose lanes were full (index = target loop).
    static LOOP_THREAD: RefCell<Option<LoopThread>> = const { RefCell::new(None) };
}

struct LoopThread {
    engine: *const EngineShared,
    overflow: Vec<VecDeque<LoopMessage>>,
}

impl EngineShared {
    pub(crate) fn is_stopping(&self) -> bool {
        // Acquire: pairs with the Release in `request_stop`.
        self.stopping.load(Ordering::Acquire)
    }

    /// `true` once the loops must close their connections and exit.
    pub(crate) fn loops_stopping(&self) -> bool {
        // Acquire: pairs with the Release in `stop_loops`.
        self.loops_stopping.load(Ordering::Acquire)
    }

    /// Sets the stop flag, pokes the acceptor and wakes the thread in
    /// [`Server::run`], which stops the actors in order. Never waits for
    /// another actor.
    pub(crate) fn request_stop(&self) {
        // AcqRel: only the first caller pokes; everything before it is seen
        // by actors that see the flag.
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        log::debug!("engine stopping");
        if let Some(acceptor) = &self.acceptor {
            let _ = acceptor.try_send(AcceptorMessage::Stop);
        }
        let _state = self.run_state.lock().unwrap_or_else(|e| e.into_inner());
        self.stop_requested.notify_all();
    }

    /// The loop holding the fewest connections.
    pub(crate) fn least_loaded_loop(&self) -> usize {
        // Relaxed: an estimate is all a balancer needs.
        (0..self.loops.len())
            .min_by_key(|&i| self.loops[i].connections.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// How long loops may spend flushing queued bytes at stop.
    pub(crate) fn drain_timeout(&self) -> std::time::Duration {
        // Relaxed: written before the stop request, whose AcqRel orders it.
        std::time::Duration::from_millis(self.drain_timeout_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn stats_of(&self, index: usize) -> LoopStats {
        let slot = &self.loops[index];
        // Relaxed: a snapshot.
        let connections = slot.connections.load(Ordering::Relaxed) as u64;
        slot.counters
            .snapshot(connections, slot.sender.doorbell_rings())
    }

    /// Wakes the acceptor and every loop to look at the engine's flags.
    pub(crate) fn wake_actors(&self) {
        if let Some(acceptor) = &self.acceptor {
            let _ = acceptor.try_send(AcceptorMessage::Stop);
        }
        for slot in &self.loops {
            // A full lane means the loop is awake with work queued anyway.
            let _ = slot.sender.try_send(LoopMessage::Stop);
        }
    }

    /// Phase 3 of shutdown: tells every loop to close up and exit.
    fn stop_loops(&self) {
        // Release: a loop that sees it (Acquire) also sees the stop flag.
        self.loops_stopping.store(true, Ordering::Release);
        for slot in &self.loops {
            // A full lane means the loop is awake with work queued; it checks
            // the flag on its next turn anyway.
            let _ = slot.sender.try_send(LoopMessage::Stop);
        }
    }

    /// The engine's worker pool, started on first use.
    pub(crate) fn pool(&self) -> Result<&WorkerPool> {
        if self.is_stopping() && self.pool.get().is_none() {
            return Err(Error::EngineStopped);
        }
        let (workers, capacity, policy) = self.pool_config;
        self.pool
            .get_or_try_init(|| WorkerPool::new(workers, capacity, policy))
    }

    pub(crate) fn record_error(&self, error: Error) {
        log::error!("{error}");
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(error);
    }

    fn on_own_loop_thread(&self) -> bool {
        LOOP_THREAD.with(|t| {
            t.borrow()
                .as_ref()
                .is_some_and(|t| std::ptr::eq(t.engine, self))
        })
    }

    /// Sends `message` to loop `index`: waits for room on ordinary threads;
    /// on this engine's loop threads never waits (overflow instead). On
    /// failure the message is dropped, which answers its completion.
    pub(crate) fn send_to_loop(&self, index: usize, message: LoopMessage) -> Result<()> {
        let slot = self.loops.get(index).ok_or(Error::EngineStopped)?;
        if self.on_own_loop_thread() {
            let refused = LOOP_THREAD.with(|t| {
                let mut t = t.borrow_mut();
                let overflow = &mut t.as_mut().expect("checked above").overflow[index];
                if !overflow.is_empty() {
                    overflow.push_back(message);
                    return None;
                }
                match slot.sender.try_send(message) {
                    Ok(()) => None,
                    Err(TrySendError::Full(m)) => {
                        overflow.push_back(m);
                        None
                    }
                    Err(TrySendError::Closed(m)) => Some(m),
                }
            });
            // Dropped outside the borrow: its completion may send again.
            return match refused {
                None => Ok(()),
                Some(message) => {
                    drop(message);
                    Err(Error::EngineStopped)
                }
            };
        }
        slot.sender.send(message).map_err(|_| Error::EngineStopped)
    }

    /// Sends without waiting; hands the message back with the reason.
    // The error path is cold and hands the message straight back to its
    // caller; boxing it would add an allocation to every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send_to_loop(
        &self,
        index: usize,
        message: LoopMessage,
    ) -> Result<(), (LoopMessage, Error)> {
        let Some(slot) = self.loops.get(index) else {
            return Err((message, Error::EngineStopped));
        };
        // On a loop thread, requests waiting in its overflow go first: a new
        // one may not overtake them (per-thread order), so the lane counts as
        // full until they are through.
        let overflowing = self.on_own_loop_thread()
            && LOOP_THREAD.with(|t| {
                t.borrow()
                    .as_ref()
                    .is_some_and(|t| !t.overflow[index].is_empty())
            });
        if overflowing {
            return Err((message, Error::MailboxFull));
        }
        slot.sender.try_send(message).map_err(|e| match e {
            TrySendError::Full(m) => (m, Error::MailboxFull),
            TrySendError::Closed(m) => (m, Error::EngineStopped),
        })
    }

    /// Called by a loop each turn: retries the requests it made that found
    /// a lane full. Returns `true` if some are still waiting (the loop then
    /// parks with a short timeout, since nothing wakes it when room frees up).
    pub(crate) fn flush_loop_overflow(&self) -> bool {
        // Undeliverable messages are dropped only after the thread-local
        // borrow ends: dropping one answers its completion, and that user
        // callback may itself send.
        let mut undeliverable = Vec::new();
        let waiting = LOOP_THREAD.with(|t| {
            let mut t = t.borrow_mut();
            let Some(t) = t.as_mut() else { return false };
            let mut waiting = false;
            for (index, queue) in t.overflow.iter_mut().enumerate() {
                while let Some(message) = queue.pop_front() {
                    match self.loops[index].sender.try_send(message) {
                        Ok(()) => {}
                        Err(TrySendError::Full(m)) => {
                            queue.push_front(m);
                            waiting = true;
                            break;
                        }
                        Err(TrySendError::Closed(m)) => undeliverable.push(m),
                    }
                }
            }
            waiting
        });
        drop(undeliverable);
        waiting
    }

    /// Marks the current thread as loop `index` of this engine.
    pub(crate) fn enter_loop_thread(self: &Arc<Self>) {
        let overflow = (0..self.loops.len()).map(|_| VecDeque::new()).collect();
        LOOP_THREAD.with(|t| {
            *t.borrow_mut() = Some(LoopThread {
                engine: Arc::as_ptr(self),
                overflow,
            });
        });
    }

    /// Forgets the loop-thread marker; undelivered overflow is dropped, which
    /// answers each completion with "engine stopped".
    pub(crate) fn leave_loop_thread(&self) {
        let left = LOOP_THREAD.with(|t| t.borrow_mut().take());
        drop(left);
    }
}

/// A handle to a running (or built) engine: `Send + Sync + Clone`, usable
/// from any thread, including inside handlers.
///
/// ```
/// use ringloop::{Engine, EventHandler};
///
/// struct Quiet;
/// impl EventHandler for Quiet {
///     type State = ();
/// }
///
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
/// let engine = server.engine();
/// let runner = std::thread::spawn(move || server.run());
/// assert_eq!(engine.connection_count(), 0);
/// engine.stop(); // returns once every thread has finished
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<EngineShared>,
}

impl Engine {
    /// Starts building an engine whose loops each get a handler made by
    /// `factory(loop_index)`, on the loop's own thread.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|loop_index| {
    ///     // Runs once per loop, on that loop's thread.
    ///     let _ = loop_index;
    ///     Quiet
    /// })
    /// .listen("tcp://127.0.0.1:0")
    /// .build()?;
    /// assert_eq!(server.engine().loop_count(), 2);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn builder<H, F>(factory: F) -> EngineBuilder<H>
    where
        H: EventHandler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        EngineBuilder {
            factory: Arc::new(factory),
            addrs: Vec::new(),
            options: Options::default(),
            deploy: Default::default(),
        }
    }

    /// Connections currently open on all loops.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// while engine.connection_count() == 0 {
    ///     std::thread::sleep(std::time::Duration::from_millis(1)); // accepted soon
    /// }
    /// assert_eq!(engine.connection_count(), 1);
    /// drop(client);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connection_count(&self) -> usize {
        // Relaxed: a snapshot of independent counters.
        self.shared
            .loops
            .iter()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Number of event loops.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(3).build()?;
    /// assert_eq!(server.engine().loop_count(), 3);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn loop_count(&self) -> usize {
        self.shared.loops.len()
    }

    /// The addresses the engine listens on, with the real ports.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let addr = &engine.local_addrs()[0]; // port 0 became a real port
    /// assert_ne!(addr.sock_addr().as_inet().unwrap().port(), 0);
    /// println!("listening on {addr}"); // tcp://127.0.0.1:PORT
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.shared.addrs
    }

    /// `true` once a stop was requested.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// assert!(!engine.is_stopping());
    /// engine.stop();
    /// assert!(engine.is_stopping());
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// The engine's worker pool (see [`WorkerPool`]), started on first use
    /// with the builder's [`workers`](EngineBuilder::workers) settings.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").workers(2).build()?;
    /// let engine = server.engine();
    /// let pool = engine.worker_pool()?; // starts the pool
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.submit(move || tx.send("done").unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), "done");
    /// engine.stop();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
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
    /// let engine = server.engine();
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
    /// wait for itself; [`Server::run`] returns once done. Nothing in a stop
    /// can fail, so it returns nothing; errors the engine met while running
    /// are what [`Server::run`] returns.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// engine.stop(); // every thread has finished when this returns
    /// engine.stop(); // idempotent
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn stop(&self) {
        self.shared.request_stop();
        if self.shared.on_own_loop_thread() || crate::worker_pool::on_worker_thread() {
            return;
        }
        if let Some(pool) = self.shared.pool.get() {
            // A server that was never run: nobody else will join the pool.
            let state = *self
                .shared
                .run_state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if state == RunState::Built {
                pool.shutdown_timeout(self.shared.pool_shutdown_timeout);
            }
        }
        let mut state = self
            .shared
            .run_state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *state == RunState::Running {
            state = self
                .shared
                .finished
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Like [`stop`](Self::stop), giving connections at most `drain` to flush
    /// what is queued for them before they are closed hard (the default is the
    /// builder's [`drain_timeout`](EngineBuilder::drain_timeout)).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// // Give slow peers at most 100 ms to take what is queued for them.
    /// engine.stop_with_timeout(std::time::Duration::from_millis(100));
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn stop_with_timeout(&self, drain: std::time::Duration) {
        if !self.shared.is_stopping() {
            // Relaxed: published by the stop request's AcqRel swap.
            self.shared.drain_timeout_ms.store(
                drain.as_millis().min(u64::MAX as u128) as u64,
                Ordering::Relaxed,
            );
        }
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
    /// let engine = server.engine();
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
    ///
    /// ```
    /// use ringloop::{Action, Conn, Engine, EventHandler};
    ///
    /// /// Greets each connection by the name its dial gave it.
    /// struct Named;
    /// impl EventHandler for Named {
    ///     type State = String;
    ///     fn on_open(&mut self, conn: &mut Conn<'_, String>) -> Action {
    ///         let hello = format!("hello from {}\n", conn.state_or_default());
    ///         let _ = conn.write(hello.as_bytes());
    ///         Action::None
    ///     }
    /// }
    ///
    /// let server = Engine::builder(|_| Named).build()?; // a client only
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let peer = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let handle = engine.dial_with(peer.local_addr()?, "client 7".to_string()).wait()?;
    /// let (mut accepted, _) = peer.accept()?;
    /// let mut hello = [0; 19];
    /// std::io::Read::read_exact(&mut accepted, &mut hello)?;
    /// assert_eq!(&hello, b"hello from client 7");
    /// # drop(handle);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dial_with<S: Send + 'static>(&self, addr: impl ToAddr, state: S) -> Pending<ConnHandle> {
        self.dial_state_on(self.least_loaded_loop(), addr, Some(Box::new(state)))
    }

    /// Like [`dial`](Self::dial), onto loop `index`.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// let engine = server.engine();
    /// let addr = engine.local_addrs()[0].to_string();
    /// let runner = std::thread::spawn(move || server.run());
    /// let handle = engine.dial_on(1, &addr).wait()?;
    /// assert_eq!(handle.id().loop_index(), 1);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn dial_on(&self, index: usize, addr: impl ToAddr) -> Pending<ConnHandle> {
        self.dial_state_on(index, addr, None)
    }

    fn dial_state_on(
        &self,
        index: usize,
        addr: impl ToAddr,
        state: Option<InitialState>,
    ) -> Pending<ConnHandle> {
        let (tx, rx) = flume::bounded(1);
        let done = Completion::new(Some(Box::new(move |r| {
            let _ = tx.send(r);
        })));
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
        Pending { rx }
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
    /// let engine = server.engine();
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
        let (tx, rx) = flume::bounded(1);
        let done = Completion::new(Some(Box::new(move |r| {
            let _ = tx.send(r);
        })));
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
        Pending { rx }
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
    /// let engine = server.engine();
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
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Tagged;
    /// # impl EventHandler for Tagged { type State = u32; }
    /// let server = Engine::builder(|_| Tagged).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let addr = engine.local_addrs()[0].sock_addr().as_inet().unwrap();
    /// let runner = std::thread::spawn(move || server.run());
    /// let stream = std::net::TcpStream::connect(addr)?;
    /// let handle = engine.enroll_with(stream, 7u32).wait()?; // on_open sees Some(&7)
    /// assert_eq!(handle.write("hi").wait()?, 2);
    /// let wrong = std::net::TcpStream::connect(addr)?;
    /// assert!(engine.enroll_with(wrong, "not a u32").wait().is_err());
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enroll_with<S: Send + 'static>(
        &self,
        socket: impl Into<OwnedFd>,
        state: S,
    ) -> Pending<ConnHandle> {
        self.enroll_state(socket.into(), Some(Box::new(state)))
    }

    fn enroll_state(&self, fd: OwnedFd, state: Option<InitialState>) -> Pending<ConnHandle> {
        let (tx, rx) = flume::bounded(1);
        let done = Completion::new(Some(Box::new(move |r| {
            let _ = tx.send(r);
        })));
        let message = LoopMessage::Enroll { fd, done, state };
        let _ = self.shared.send_to_loop(self.least_loaded_loop(), message);
        Pending { rx }
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
    /// let engine = server.engine();
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
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// let engine = server.engine();
    /// let stats = engine.stats();
    /// assert_eq!(stats.len(), 2); // one entry per loop
    /// println!("{:?}", stats[0]);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn stats(&self) -> Vec<LoopStats> {
        (0..self.shared.loops.len())
            .map(|i| self.shared.stats_of(i))
            .collect()
    }

    /// Counters of all loops summed.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let total = engine.total_stats();
    /// println!("{total:?}"); // the per-loop counters, summed
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn total_stats(&self) -> LoopStats {
        self.stats().into_iter().sum()
    }

    /// The awaitable form of [`stop`](Self::stop): starts the stop and returns
    /// a [`Pending`] that completes once the engine has finished.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let stopped = engine.stop_pending(); // starts the stop, returns at once
    /// stopped.wait()?; // or `.await` it
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
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
    /// let engine = server.engine();
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
        if index >= self.shared.loops.len() {
            return Err(Error::InvalidConfig(format!("no loop {index}")));
        }
        self.shared
            .send_to_loop(index, LoopMessage::Execute(Box::new(task)))
    }

    /// Runs a copy of `task` on every loop.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run());
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let tx = std::sync::Mutex::new(tx);
    /// engine.execute_all(move |ctx| tx.lock().unwrap().send(ctx.loop_index()).unwrap())?;
    /// let mut ran = [rx.recv().unwrap(), rx.recv().unwrap()];
    /// ran.sort();
    /// assert_eq!(ran, [0, 1]);
    /// engine.stop();
    /// runner.join().unwrap()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn execute_all(
        &self,
        task: impl Fn(&mut LoopContext) + Send + Sync + 'static,
    ) -> Result<()> {
        let task = Arc::new(task);
        for index in 0..self.shared.loops.len() {
            let task = task.clone();
            self.shared
                .send_to_loop(index, LoopMessage::Execute(Box::new(move |ctx| task(ctx))))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("loops", &self.shared.loops.len())
            .field("addrs", &self.shared.addrs)
            .field("stopping", &self.is_stopping())
            .finish()
    }
}

type Factory<H> = Arc<dyn Fn(usize) -> H + Send + Sync>;

/// Settings and addresses of an engine; [`build`](Self::build) binds the
/// listeners, [`run`](Self::run) also serves until stopped.
///
/// ```
/// # use ringloop::{Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet)
///     .listen("tcp://127.0.0.1:0")
///     .loops(2)
///     .workers(4)
///     .build()?; // checks the settings and binds the listener
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct EngineBuilder<H> {
    factory: Factory<H>,
    pub(crate) addrs: Vec<String>,
    pub(crate) options: Options,
    pub(crate) deploy: crate::deploy::DeployConfig,
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Adds an address to listen on, in URL form: `tcp://127.0.0.1:9000`,
    /// `tcp6://[::1]:9000`, `unix:///tmp/app.sock`, or as a
    /// `std::net::SocketAddr` (TCP) — anything [`ToAddr`]. Port 0 picks a
    /// free port (see [`Engine::local_addrs`]). Checked by
    /// [`build`](Self::build).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0))) // a second listener
    ///     .build()?;
    /// let engine = server.engine();
    /// assert_eq!(engine.local_addrs().len(), 2);
    /// // A bad address is refused by build.
    /// assert!(Engine::builder(|_| Quiet).listen("tulip://x").build().is_err());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen(mut self, addr: impl ToAddr) -> Self {
        self.addrs.push(addr.to_url().into_owned());
        self
    }

    /// Replaces every option at once.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::Options;
    /// let mut options = Options::default(); // #[non_exhaustive]: start from the defaults
    /// options.loops = 2;
    /// let server = Engine::builder(|_| Quiet).options(options).listen("tcp://127.0.0.1:0").build()?;
    /// assert_eq!(server.engine().loop_count(), 2);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Number of event loops (default: one per core; 1 ..= 1024).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(2).build()?;
    /// assert_eq!(server.engine().loop_count(), 2);
    /// assert!(Engine::builder(|_| Quiet).loops(0).build().is_err()); // out of range
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn loops(mut self, n: usize) -> Self {
        self.options.loops = n;
        self
    }

    /// Size of each loop's read buffer (default 64 KiB).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .read_buffer_size(16 * 1024) // small requests: less memory per loop
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.options.read_buffer_size = bytes;
        self
    }

    /// Largest block small writes are coalesced into (default 64 KiB).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .write_buffer_cap(16 * 1024)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn write_buffer_cap(mut self, bytes: usize) -> Self {
        self.options.write_buffer_cap = bytes;
        self
    }

    /// `TCP_NODELAY` on accepted connections (default on).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .tcp_nodelay(false) // bulk transfers: let Nagle coalesce
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.options.tcp_nodelay = on;
        self
    }

    /// TCP keepalive on accepted connections (default off).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::KeepAlive;
    /// use std::time::Duration;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .tcp_keepalive(Some(KeepAlive::new(Duration::from_secs(60))))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tcp_keepalive(mut self, keepalive: Option<KeepAlive>) -> Self {
        self.options.tcp_keepalive = keepalive;
        self
    }

    /// `SO_RCVBUF` for listeners and connections.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .recv_buffer_size(256 * 1024)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.options.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF` for listeners and connections.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .send_buffer_size(256 * 1024)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.options.send_buffer_size = Some(bytes);
        self
    }

    /// `SO_REUSEADDR` on listeners (default on).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .reuse_addr(true)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.options.reuse_addr = on;
        self
    }

    /// SO_REUSEPORT mode: no acceptor; every loop owns its own listener for
    /// each TCP address and the kernel spreads connections (default off).
    /// Two engines in this mode can share a port.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .reuse_port(true) // one listener per loop, no acceptor
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.options.reuse_port = on;
        self
    }

    /// Edge-triggered connection I/O (default off, level-triggered).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .edge_triggered(true)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn edge_triggered(mut self, on: bool) -> Self {
        self.options.edge_triggered = on;
        self
    }

    /// Per-connection byte budget per turn in edge-triggered mode (default
    /// 1 MiB); setting it turns edge-triggered mode on.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .edge_triggered_chunk(256 * 1024) // implies edge-triggered mode
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn edge_triggered_chunk(mut self, bytes: usize) -> Self {
        self.options.edge_triggered = true;
        self.options.edge_triggered_chunk = bytes;
        self
    }

    /// Listen backlog (default 1024).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .listen_backlog(4096) // large bursts of connects
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn listen_backlog(mut self, backlog: i32) -> Self {
        self.options.listen_backlog = backlog;
        self
    }

    /// How connections are spread over loops (default round-robin).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::LoadBalancer;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .load_balancer(LoadBalancer::LeastConnections)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn load_balancer(mut self, policy: LoadBalancer) -> Self {
        self.options.load_balancer = policy;
        self
    }

    /// Messages per mailbox lane (default 1024).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .mailbox_capacity(4096) // more room for bursts from other threads
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.options.mailbox_capacity = n;
        self
    }

    /// The loops' wake-up fd (default eventfd, else a pipe).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::Doorbell;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .doorbell(Doorbell::Pipe)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn doorbell(mut self, kind: crate::doorbell::Doorbell) -> Self {
        self.options.doorbell = kind;
        self
    }

    /// Connection timeouts (default none); a connection can override them
    /// with [`Conn::set_timeouts`](crate::Conn::set_timeouts).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::Timeouts;
    /// use std::time::Duration;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .timeouts(Timeouts::none().idle(Duration::from_secs(300)))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.options.timeouts = timeouts;
        self
    }

    /// Outbound high- and low-water marks per connection (default 4 MiB /
    /// 1 MiB); see [`Conn::set_write_water_marks`](crate::Conn::set_write_water_marks).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::WaterMarks;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .write_water_marks(WaterMarks::new(256 * 1024, 64 * 1024))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn write_water_marks(mut self, marks: WaterMarks) -> Self {
        self.options.write_water_marks = marks;
        self
    }

    /// What a connection above its high-water mark does (default: pause
    /// reading from it).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::BackPressure;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .back_pressure(BackPressure::Close) // drop peers that do not read
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn back_pressure(mut self, policy: BackPressure) -> Self {
        self.options.back_pressure = policy;
        self
    }

    /// The most bytes a connection may leave unconsumed (default 64 MiB).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .max_inbound(1 << 20) // close peers that send more than 1 MiB unconsumed
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn max_inbound(mut self, bytes: usize) -> Self {
        self.options.max_inbound = bytes;
        self
    }

    /// How long a dial may take to connect (default 10 s).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .connect_timeout(std::time::Duration::from_secs(2))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// How long a stop lets connections flush before closing them hard
    /// (default 5 s).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .drain_timeout(std::time::Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn drain_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.drain_timeout = timeout;
        self
    }

    /// Worker-pool threads (default: 4 per core, at least 4). The pool starts
    /// on first use.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .workers(8)
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn workers(mut self, n: usize) -> Self {
        self.options.workers = n;
        self
    }

    /// Jobs the worker pool's queue holds (default 4096).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .job_queue_capacity(100) // submit hands jobs back beyond this
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn job_queue_capacity(mut self, n: usize) -> Self {
        self.options.job_queue_capacity = n;
        self
    }

    /// What happens to queued jobs at shutdown (default: finish them).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::PoolShutdown;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .pool_shutdown(PoolShutdown::Cancel) // queued jobs are dropped at stop
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn pool_shutdown(mut self, policy: PoolShutdown) -> Self {
        self.options.pool_shutdown = policy;
        self
    }

    /// The longest a stop waits for the worker pool (default 30 s); see
    /// [`Options::pool_shutdown_timeout`].
    pub fn pool_shutdown_timeout(mut self, limit: std::time::Duration) -> Self {
        self.options.pool_shutdown_timeout = limit;
        self
    }

    /// Closes gracefully closed connections lingering for at most `limit`
    /// (default off); see [`Options::lingering_close`].
    pub fn lingering_close(mut self, limit: Option<std::time::Duration>) -> Self {
        self.options.lingering_close = limit;
        self
    }

    /// The most bytes all connections together may hold (default 512 MiB);
    /// see [`Options::buffer_budget`].
    pub fn buffer_budget(mut self, bytes: usize) -> Self {
        self.options.buffer_budget = bytes;
        self
    }

    /// Calls [`EventHandler::on_tick`] on loop 0 (default off).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tcp://127.0.0.1:0")
    ///     .ticker(true) // on_tick runs on loop 0
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn ticker(mut self, on: bool) -> Self {
        self.options.ticker = on;
        self
    }

    /// The rustls server config for `tls://` listen addresses (required when
    /// there is one); [`tls::ServerTls`](crate::tls::ServerTls) makes one
    /// from PEM files. Handlers see plaintext and the session through
    /// [`Conn::tls`](crate::Conn::tls).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// # let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// # let (cert_pem, key_pem) = (c.cert.pem(), c.key_pair.serialize_pem());
    /// let config = ringloop::tls::ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?.build()?;
    /// let server = Engine::builder(|_| Quiet)
    ///     .listen("tls://127.0.0.1:0")
    ///     .listen("tcp://127.0.0.1:0") // plain and TLS side by side
    ///     .tls_server(config)
    ///     .build()?;
    /// // Without a config, a tls:// address is refused.
    /// assert!(Engine::builder(|_| Quiet).listen("tls://127.0.0.1:0").build().is_err());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tls_server(mut self, config: impl Into<std::sync::Arc<rustls::ServerConfig>>) -> Self {
        self.options.tls.server = Some(config.into());
        self
    }

    /// The rustls client config `tls://` dials verify servers with, unless
    /// they bring a [`TlsConnector`](crate::tls::TlsConnector);
    /// [`tls::client_config`](crate::tls::client_config) makes one from a CA
    /// file's PEM.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// # let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    /// let config = ringloop::tls::client_config(c.cert.pem().as_bytes())?;
    /// let server = Engine::builder(|_| Quiet).tls_client(config).build()?;
    /// // engine.dial("tls://localhost:8443") now checks the server against that CA.
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tls_client(mut self, config: impl Into<std::sync::Arc<rustls::ClientConfig>>) -> Self {
        self.options.tls.client = Some(config.into());
        self
    }

    /// How long a TLS handshake may take (default 10 s); a connection past
    /// it closes with [`TimeoutKind::Handshake`](crate::TimeoutKind::Handshake).
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet)
    ///     .tls_handshake_timeout(std::time::Duration::from_secs(3))
    ///     .build()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn tls_handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.options.tls.handshake_timeout = timeout;
        self
    }

    /// Checks the settings, binds every listener and creates every mailbox.
    /// Nothing runs yet; the real addresses are in [`Server::engine`]'s
    /// [`Engine::local_addrs`].
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// // Bound, not yet serving: the real port is known already.
    /// assert_eq!(server.engine().local_addrs().len(), 1);
    /// let err = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:99999").build().unwrap_err();
    /// assert!(matches!(err, ringloop::Error::InvalidAddress { .. }));
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn build(mut self) -> Result<Server<H>> {
        self.options.validate()?;
        // No address is fine: a client engine only dials and enrolls.
        let mut inherited = self.deploy.take_inherited(&self.addrs)?;
        let addrs = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| inherited.addr(i).map_or_else(|| ListenAddr::parse(a), Ok))
            .collect::<Result<Vec<_>>>()?;
        if addrs.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidConfig("too many listen addresses".into()));
        }
        self.deploy.validate(&addrs)?;
        if let Some(addr) = addrs.iter().find(|a| a.is_tls()) {
            if self.options.tls.server.is_none() {
                return Err(Error::InvalidConfig(format!(
                    "{addr} needs a server config (EngineBuilder::tls_server)"
                )));
            }
        }
        let loops = self.options.loops;
        let mut acceptor_listeners = Vec::new();
        let mut loop_sockets: Vec<LoopSockets> =
            (0..loops).map(|_| LoopSockets::default()).collect();
        let mut local_addrs = Vec::with_capacity(addrs.len());
        for (index, addr) in addrs.iter().enumerate() {
            let index = index as u16;
            match addr.transport() {
                // Taken over (fd://N, systemd, an upgrade), not bound.
                _ if inherited.has(index) => local_addrs.push(inherited.place(
                    index,
                    &mut acceptor_listeners,
                    &mut loop_sockets,
                    &self.options,
                )?),
                // Every loop gets its own socket on the same port (the first
                // bind picks the port when 0 is asked for).
                Transport::Udp => {
                    let (fd, bound) = Listener::bind_udp(addr, &self.options, true)?;
                    loop_sockets[0].udp.push((fd, index));
                    for sockets in loop_sockets.iter_mut().skip(1) {
                        let (fd, _) = Listener::bind_udp(&bound, &self.options, false)?;
                        sockets.udp.push((fd, index));
                    }
                    local_addrs.push(bound);
                }
                Transport::Tcp if self.options.reuse_port => {
                    let first = Listener::bind(addr, &self.options, true)?;
                    let bound = first.addr.clone();
                    loop_sockets[0].listeners.push((first, index));
                    for sockets in loop_sockets.iter_mut().skip(1) {
                        sockets
                            .listeners
                            .push((Listener::bind(&bound, &self.options, true)?, index));
                    }
                    local_addrs.push(bound);
                }
                // A Unix path cannot be shared: in reuseport mode loop 0
                // serves it alone.
                _ if self.options.reuse_port => {
                    let listener = Listener::bind(addr, &self.options, false)?;
                    local_addrs.push(listener.addr.clone());
                    loop_sockets[0].listeners.push((listener, index));
                }
                _ => {
                    let listener = Listener::bind(addr, &self.options, false)?;
                    local_addrs.push(listener.addr.clone());
                    acceptor_listeners.push((listener, index));
                }
            }
        }
        let control = self
            .deploy
            .finish_upgrade(&acceptor_listeners, &loop_sockets)?;
        let mailbox_config = MailboxConfig::new()
            .lane_capacity(self.options.mailbox_capacity)
            .doorbell(self.options.doorbell.kind());
        let mailbox_error = |e| Error::io("create a mailbox", e);
        let loop_mailboxes = (0..self.options.loops)
            .map(|_| {
                Mailbox::<LoopMessage>::with_config(mailbox_config.clone()).map_err(mailbox_error)
            })
            .collect::<Result<Vec<_>>>()?;
        let acceptor_mailbox =
            Mailbox::<AcceptorMessage>::with_config(mailbox_config).map_err(mailbox_error)?;
        let shared = Arc::new(EngineShared {
            loops: loop_mailboxes
                .iter()
                .map(|m| LoopSlot {
                    sender: m.shared_sender(),
                    connections: CachePadded::new(AtomicUsize::new(0)),
                    counters: CachePadded::new(LoopCounters::default()),
                })
                .collect(),
            acceptor: (!acceptor_listeners.is_empty()).then(|| acceptor_mailbox.shared_sender()),
            stopping: AtomicBool::new(false),
            loops_stopping: AtomicBool::new(false),
            run_state: Mutex::new(RunState::Built),
            stop_requested: Condvar::new(),
            finished: Condvar::new(),
            first_error: Mutex::new(None),
            addrs: local_addrs,
            pool: once_cell::sync::OnceCell::new(),
            drain_timeout_ms: AtomicU64::new(
                self.options.drain_timeout.as_millis().min(u64::MAX as u128) as u64,
            ),
            pool_config: (
                self.options.workers,
                self.options.job_queue_capacity,
                self.options.pool_shutdown,
            ),
            deploy: crate::deploy::DeployShared::new(
                &self.deploy,
                self.options.limits,
                &addrs,
                control,
                usize::from(!acceptor_listeners.is_empty())
                    + loop_sockets
                        .iter()
                        .filter(|s| !s.listeners.is_empty())
                        .count(),
            ),
            pool_shutdown_timeout: self.options.pool_shutdown_timeout,
            budget: crate::budget::SharedBudget::new(self.options.buffer_budget),
        });
        let acceptor = (!acceptor_listeners.is_empty()).then(|| {
            Acceptor::new(
                acceptor_listeners,
                acceptor_mailbox,
                loop_mailboxes.iter().map(Mailbox::sender).collect(),
                self.options.load_balancer,
                shared.clone(),
            )
        });
        Ok(Server {
            engine: Engine { shared },
            factory: self.factory,
            loop_mailboxes,
            loop_sockets,
            acceptor,
            options: self.options,
        })
    }

    /// Builds and runs the engine until it stops.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// use ringloop::{Action, LoopContext};
    /// use std::time::Duration;
    ///
    /// struct StopAtOnce;
    /// impl EventHandler for StopAtOnce {
    ///     type State = ();
    ///     fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
    ///         (Duration::from_secs(1), Action::Shutdown)
    ///     }
    /// }
    ///
    /// // Build and serve in one call; returns when the engine stops.
    /// Engine::builder(|_| StopAtOnce).listen("tcp://127.0.0.1:0").loops(1).ticker(true).run()?;
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn run(self) -> Result<()> {
        self.build()?.run()
    }
}

impl<H> fmt::Debug for EngineBuilder<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("addrs", &self.addrs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A bound engine, ready to [`run`](Self::run).
///
/// ```
/// # use ringloop::{Engine, EventHandler};
/// # struct Quiet;
/// # impl EventHandler for Quiet { type State = (); }
/// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
/// let engine = server.engine(); // for other threads: stop, stats, dial…
/// let runner = std::thread::spawn(move || server.run());
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct Server<H> {
    engine: Engine,
    factory: Factory<H>,
    loop_mailboxes: Vec<Mailbox<LoopMessage>>,
    loop_sockets: Vec<LoopSockets>,
    acceptor: Option<Acceptor>,
    options: Options,
}

impl<H: EventHandler> Server<H> {
    /// A handle to the engine, for other threads.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").build()?;
    /// let engine = server.engine(); // Clone + Send + Sync
    /// let stopper = std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     engine.stop()
    /// });
    /// server.run()?; // returns once the other thread has stopped it
    /// stopper.join().unwrap();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Serves until the engine is stopped ([`Engine::stop`] or
    /// [`Action::Shutdown`](crate::Action::Shutdown)). Returns the first fatal
    /// error an actor met, if any.
    ///
    /// ```
    /// # use ringloop::{Engine, EventHandler};
    /// # struct Quiet;
    /// # impl EventHandler for Quiet { type State = (); }
    /// let server = Engine::builder(|_| Quiet).listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// let engine = server.engine();
    /// let runner = std::thread::spawn(move || server.run()); // serves until stopped
    /// let _client = std::net::TcpStream::connect(engine.local_addrs()[0].sock_addr().as_inet().unwrap())?;
    /// engine.stop(); // closes the connection too
    /// runner.join().unwrap()?; // run's result: Ok, no actor failed
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(self) -> Result<()> {
        let shared = self.engine.shared.clone();
        {
            let mut state = shared.run_state.lock().unwrap_or_else(|e| e.into_inner());
            if *state != RunState::Built {
                return Err(Error::EngineStopped);
            }
            *state = RunState::Running;
        }
        let mut loop_threads = Vec::new();
        let spawn_error = |e| Error::io("start a thread", e);
        let mut result = Ok(());
        let loops = self.loop_mailboxes.into_iter().zip(self.loop_sockets);
        for (index, (mailbox, sockets)) in loops.enumerate() {
            let factory = self.factory.clone();
            let engine = self.engine.clone();
            let options = self.options.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringloop-loop-{index}"))
                .spawn(move || {
                    engine.shared.enter_loop_thread();
                    let handler = factory(index);
                    let outcome =
                        EventLoop::new(index, handler, mailbox, sockets, engine.clone(), &options)
                            .and_then(EventLoop::run);
                    if let Err(e) = outcome {
                        engine.shared.record_error(e);
                        engine.shared.request_stop();
                    }
                    engine.shared.leave_loop_thread();
                });
            match spawned {
                Ok(t) => loop_threads.push(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                    break;
                }
            }
        }
        let mut acceptor_thread = None;
        if let (Some(acceptor), true) = (self.acceptor, result.is_ok()) {
            match thread::Builder::new()
                .name("ringloop-acceptor".into())
                .spawn(move || acceptor.run())
            {
                Ok(t) => acceptor_thread = Some(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                }
            }
        }
        let upgrade_thread = match crate::upgrade::start(&shared) {
            Ok(t) => t,
            Err(e) => {
                result = result.and(Err(e));
                shared.request_stop();
                None
            }
        };
        // This thread is the shutdown coordinator: wait for a stop request...
        {
            let mut state = shared.run_state.lock().unwrap_or_else(|e| e.into_inner());
            while !shared.is_stopping() {
                state = shared
                    .stop_requested
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        let join = |t: thread::JoinHandle<()>| {
            if t.join().is_err() {
                shared.record_error(Error::io(
                    "an actor thread panicked",
                    std::io::Error::other("panic"),
                ));
            }
        };
        // ...then stop accepting, drain the worker pool, and close the loops.
        if let Some(t) = acceptor_thread {
            join(t);
        }
        if let Some(t) = upgrade_thread {
            join(t);
        }
        if let Some(pool) = shared.pool.get() {
            pool.shutdown_timeout(shared.pool_shutdown_timeout);
        }
        shared.stop_loops();
        for t in loop_threads {
            join(t);
        }
        let first = shared
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        {
            let mut state = shared.run_state.lock().unwrap_or_else(|e| e.into_inner());
            *state = RunState::Finished;
            shared.finished.notify_all();
        }
        log::debug!("engine finished");
        result.and(first.map_or(Ok(()), Err))
    }
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
