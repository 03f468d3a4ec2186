//! The runtime: what the actors of one engine share and how they reach each
//! other.
//!
//! Owns the loop messages, the worker pool, and (in later steps) the shared
//! engine state, its lifecycle, message routing and the thread-local
//! context. It must never touch a connection or a socket: that is the loops'
//! job, above it.

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

pub(crate) mod message;
pub(crate) mod worker_pool;

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
/// engine.stop()?; // returns once every thread has finished
/// runner.join().unwrap()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) shared: Arc<EngineShared>,
}

impl EngineShared {
    /// The listeners went to a new process: every actor stops accepting
    /// (the loops keep serving their connections and tell their handlers).
    pub(crate) fn begin_upgrade_drain(&self) {
        // Release: an actor that sees the flag sees everything before it.
        self.deploy.draining.store(true, Ordering::Release);
        self.wake_actors();
    }

    /// Connections open on all loops.
    pub(crate) fn connection_count(&self) -> usize {
        // Relaxed: an estimate, polled until it reaches zero.
        self.loops
            .iter()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .sum()
    }
}
