//! The runtime: what the actors of one engine share and how they reach each
//! other — the shared engine state ([`EngineShared`]), its
//! [`lifecycle`], message [`route`]ing over the loops' mailboxes, the
//! thread-local [`context`] (which engine's loop, or a worker, the current
//! thread is), the [`worker_pool`], the loop [`message`]s and what the
//! deployment features share ([`deploy`]).
//!
//! It must never touch a connection or a socket (the loops, above it, do)
//! and never import a module above it: only the vocabulary (errors,
//! addresses, options, stats, ids) and `ringloop-actors`. The public
//! handles (`EngineHandle`'s methods in `crate::engine`, `ConnHandle`), the loop
//! and the bootstrap build on it.
//!
//! One knot is tied here on purpose: a loop message can carry a task that
//! gets the loop's [`LoopContext`](message::LoopContext), which holds an
//! [`EngineHandle`], which holds this state, which holds the loops' senders of
//! those messages. The types are mutually recursive, so they live in this
//! one unit: the [`EngineHandle`] struct is defined here (its methods are in
//! `crate::engine`), the messages in its child `message`. The other
//! children (`lifecycle`, `route`, `context`, `worker_pool`, `deploy`) know
//! nothing of messages or of this state and are tested alone.

pub(crate) mod context;
pub(crate) mod deploy;
pub(crate) mod job_queue;
pub(crate) mod lifecycle;
#[cfg(all(test, loom))]
mod loom_models;
pub(crate) mod message;
pub(crate) mod route;
pub(crate) mod sync;
pub(crate) mod worker_pool;

use std::sync::Arc;
use std::time::Duration;

use crate::actors::SharedSender;
use crate::addr::ListenAddr;
use crate::budget::SharedBudget;
use crate::error::{Error, Result};
use crate::options::PoolShutdown;
use crate::runtime::context::{EngineId, LoopGuard};
use crate::runtime::deploy::DeployShared;
use crate::runtime::lifecycle::Lifecycle;
use crate::runtime::message::{AcceptorMessage, LoopMessage};
use crate::runtime::route::{LoopSlot, Router};
use crate::runtime::worker_pool::WorkerPool;
use crate::stats::LoopStats;

/// How the engine's worker pool is made, once something needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolConfig {
    pub(crate) workers: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) policy: PoolShutdown,
    /// How long a stop waits for the pool.
    pub(crate) shutdown_timeout: Duration,
}

/// What every actor and handle of one engine shares. Its parts are private;
/// the engine's pieces reach them through the methods below.
pub(crate) struct EngineShared {
    router: Router<LoopMessage>,
    acceptor: Option<SharedSender<AcceptorMessage>>,
    lifecycle: Lifecycle,
    addrs: Vec<ListenAddr>,
    /// Started on first use (fallible, hence once_cell rather than std).
    pool: once_cell::sync::OnceCell<WorkerPool>,
    pool_config: PoolConfig,
    /// Bytes buffered by all connections, against the budget.
    budget: SharedBudget,
    /// Admission control, PROXY protocol listeners, the upgrade's drain.
    deploy: DeployShared,
    backend: crate::backend::Backend,
}

/// The parts a new engine's state is made of (see [`EngineShared::new`]).
pub(crate) struct EngineParts {
    /// Each loop's mailbox, in loop order.
    pub(crate) loops: Vec<SharedSender<LoopMessage>>,
    /// The acceptor's mailbox, if the engine has an acceptor.
    pub(crate) acceptor: Option<SharedSender<AcceptorMessage>>,
    /// The listen addresses, with their real ports.
    pub(crate) addrs: Vec<ListenAddr>,
    pub(crate) drain_timeout: Duration,
    pub(crate) pool: PoolConfig,
    pub(crate) buffer_budget: usize,
    pub(crate) deploy: DeployShared,
    /// The I/O driver the loops run on (never `Auto`: chosen at build).
    pub(crate) backend: crate::backend::Backend,
}

impl EngineShared {
    /// A built engine's state: nothing runs yet.
    pub(crate) fn new(parts: EngineParts) -> Self {
        Self {
            router: Router::new(EngineId::next(), parts.loops),
            acceptor: parts.acceptor,
            lifecycle: Lifecycle::new(parts.drain_timeout),
            addrs: parts.addrs,
            pool: once_cell::sync::OnceCell::new(),
            pool_config: parts.pool,
            budget: SharedBudget::new(parts.buffer_budget),
            deploy: parts.deploy,
            backend: parts.backend,
        }
    }

    // ----- the loops -----

    /// Number of loops.
    pub(crate) fn loop_count(&self) -> usize {
        self.router.len()
    }

    /// Loop `index` as the engine sees it (its counters, its connection
    /// count).
    pub(crate) fn slot(&self, index: usize) -> &LoopSlot<LoopMessage> {
        self.router.slot(index)
    }

    /// The loop holding the fewest connections.
    pub(crate) fn least_loaded_loop(&self) -> usize {
        self.router.least_loaded()
    }

    /// Connections open on all loops.
    pub(crate) fn connection_count(&self) -> usize {
        self.router.connection_count()
    }

    pub(crate) fn stats_of(&self, index: usize) -> LoopStats {
        self.router.stats_of(index)
    }

    /// The listen addresses, with their real ports.
    pub(crate) fn local_addrs(&self) -> &[ListenAddr] {
        &self.addrs
    }

    /// Bytes buffered by all connections, against the budget.
    pub(crate) fn budget(&self) -> &SharedBudget {
        &self.budget
    }

    /// What the deployment features share.
    pub(crate) fn deploy(&self) -> &DeployShared {
        &self.deploy
    }

    /// The I/O driver the loops run on.
    pub(crate) fn backend(&self) -> crate::backend::Backend {
        self.backend
    }

    // ----- routing (see `route`) -----

    /// Marks the current thread as one of this engine's loops until the
    /// guard drops.
    pub(crate) fn enter_loop_thread(&self) -> LoopGuard {
        self.router.enter_loop()
    }

    /// `true` on one of this engine's loop threads.
    pub(crate) fn on_own_loop_thread(&self) -> bool {
        context::on_loop_of(self.router.engine())
    }

    /// Sends `message` to loop `index`: waits for room on ordinary threads;
    /// on this engine's loop threads never waits (overflow instead). On
    /// failure the message is dropped, which answers its completion.
    pub(crate) fn send_to_loop(&self, index: usize, message: LoopMessage) -> Result<()> {
        self.router.send(index, message)
    }

    /// Sends without waiting; hands the message back with the reason.
    #[allow(clippy::result_large_err)] // see `Router::try_send`
    pub(crate) fn try_send_to_loop(
        &self,
        index: usize,
        message: LoopMessage,
    ) -> Result<(), (LoopMessage, Error)> {
        self.router.try_send(index, message)
    }

    /// Called by a loop each turn: retries the requests it made that found
    /// a lane full. Returns `true` if some are still waiting.
    pub(crate) fn flush_loop_overflow(&self) -> bool {
        self.router.flush_overflow()
    }

    // ----- the lifecycle (see `lifecycle`) -----

    /// The engine's lifecycle, for the coordinator (`Engine::run`) and
    /// `EngineHandle::stop`.
    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.lifecycle.is_stopping()
    }

    /// `true` once the loops must close their connections and exit.
    pub(crate) fn loops_stopping(&self) -> bool {
        self.lifecycle.loops_stopping()
    }

    /// Sets the stop flag, pokes the acceptor and wakes the thread in
    /// `Engine::run`, which stops the actors in order. Never waits for
    /// another actor.
    pub(crate) fn request_stop(&self) {
        if !self.lifecycle.request_stop() {
            return;
        }
        log::debug!("engine stopping");
        if let Some(acceptor) = &self.acceptor {
            let _ = acceptor.try_send(AcceptorMessage::Stop);
        }
        self.lifecycle.announce_stop();
    }

    /// How long loops may spend flushing queued bytes at stop.
    pub(crate) fn drain_timeout(&self) -> Duration {
        self.lifecycle.drain_timeout()
    }

    pub(crate) fn record_error(&self, error: Error) {
        self.lifecycle.record_error(error);
    }

    /// Wakes the acceptor and every loop to look at the engine's flags.
    pub(crate) fn wake_actors(&self) {
        if let Some(acceptor) = &self.acceptor {
            let _ = acceptor.try_send(AcceptorMessage::Stop);
        }
        self.router.offer_all(|| LoopMessage::Stop);
    }

    /// Phase 3 of shutdown: tells every loop to close up and exit.
    pub(crate) fn stop_loops(&self) {
        self.lifecycle.stop_loops();
        // A full lane means the loop is awake with work queued; it checks
        // the flag on its next turn anyway.
        self.router.offer_all(|| LoopMessage::Stop);
    }

    /// The listeners went to a new process: every actor stops accepting
    /// (the loops keep serving their connections and tell their handlers).
    pub(crate) fn begin_upgrade_drain(&self) {
        self.deploy.begin_draining();
        self.wake_actors();
    }

    // ----- the worker pool -----

    /// The engine's worker pool, started on first use.
    pub(crate) fn pool(&self) -> Result<&WorkerPool> {
        if self.is_stopping() && self.pool.get().is_none() {
            return Err(Error::EngineStopped);
        }
        let PoolConfig {
            workers,
            queue_capacity,
            policy,
            ..
        } = self.pool_config;
        self.pool
            .get_or_try_init(|| WorkerPool::new(workers, queue_capacity, policy))
    }

    /// Shuts the pool down if it was started: refuses new jobs, finishes (or
    /// cancels) the queued ones and joins, waiting at most the configured
    /// time.
    pub(crate) fn shutdown_pool(&self) {
        if let Some(pool) = self.pool.get() {
            pool.shutdown_timeout(self.pool_config.shutdown_timeout);
        }
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
/// let engine = server.handle();
/// let runner = std::thread::spawn(move || server.run());
/// assert_eq!(engine.connection_count(), 0);
/// engine.stop(); // returns once every thread has finished
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) shared: Arc<EngineShared>,
}

impl EngineHandle {
    /// The handle to the engine whose state is `shared`.
    pub(crate) fn from_shared(shared: Arc<EngineShared>) -> Self {
        Self { shared }
    }
}
