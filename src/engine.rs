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
//! (a handler) sets the stop flag and pokes every actor. The acceptor closes
//! its listeners; each loop applies the messages already queued to it, closes
//! every connection (each close callback runs once), runs `on_shutdown` and
//! exits; [`Server::run`] joins them all and returns.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::acceptor::Acceptor;
use crate::actors::{
    CachePadded, DoorbellKind, Mailbox, MailboxConfig, SharedSender, TrySendError,
};
use crate::addr::ListenAddr;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::handle::Pending;
use crate::handler::{EventHandler, LoopContext};
use crate::listener::Listener;
use crate::message::{AcceptorMessage, LoopMessage};
use crate::options::{KeepAlive, LoadBalancer, Options};

/// One loop as the rest of the engine sees it.
pub(crate) struct LoopSlot {
    pub(crate) sender: SharedSender<LoopMessage>,
    /// Connections assigned to the loop (counted from hand-off to close).
    pub(crate) connections: CachePadded<AtomicUsize>,
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
    stopping: AtomicBool,
    run_state: Mutex<RunState>,
    finished: Condvar,
    first_error: Mutex<Option<Error>>,
    addrs: Vec<ListenAddr>,
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

    /// Sets the stop flag and pokes every actor. Never blocks.
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
        for slot in &self.loops {
            // A full lane means the loop is awake with work queued; it checks
            // the flag on its next turn anyway.
            let _ = slot.sender.try_send(LoopMessage::Stop);
        }
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
            return LOOP_THREAD.with(|t| {
                let mut t = t.borrow_mut();
                let overflow = &mut t.as_mut().expect("checked above").overflow[index];
                if !overflow.is_empty() {
                    overflow.push_back(message);
                    return Ok(());
                }
                match slot.sender.try_send(message) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(m)) => {
                        overflow.push_back(m);
                        Ok(())
                    }
                    Err(TrySendError::Closed(_)) => Err(Error::EngineStopped),
                }
            });
        }
        slot.sender.send(message).map_err(|_| Error::EngineStopped)
    }

    /// Sends without waiting; hands the message back with the reason.
    pub(crate) fn try_send_to_loop(
        &self,
        index: usize,
        message: LoopMessage,
    ) -> Result<(), (LoopMessage, Error)> {
        let Some(slot) = self.loops.get(index) else {
            return Err((message, Error::EngineStopped));
        };
        slot.sender.try_send(message).map_err(|e| match e {
            TrySendError::Full(m) => (m, Error::MailboxFull),
            TrySendError::Closed(m) => (m, Error::EngineStopped),
        })
    }

    /// Called by a loop each turn: retries the requests it made that found
    /// a lane full.
    pub(crate) fn flush_loop_overflow(&self) {
        LOOP_THREAD.with(|t| {
            let mut t = t.borrow_mut();
            let Some(t) = t.as_mut() else { return };
            for (index, queue) in t.overflow.iter_mut().enumerate() {
                while let Some(message) = queue.pop_front() {
                    match self.loops[index].sender.try_send(message) {
                        Ok(()) => {}
                        Err(TrySendError::Full(m)) => {
                            queue.push_front(m);
                            break;
                        }
                        // Dropping the message answers its completion.
                        Err(TrySendError::Closed(_)) => {}
                    }
                }
            }
        });
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
/// engine.stop()?; // returns once every thread has finished
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
    pub fn builder<H, F>(factory: F) -> EngineBuilder<H>
    where
        H: EventHandler,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        EngineBuilder {
            factory: Arc::new(factory),
            addrs: Vec::new(),
            options: Options::default(),
        }
    }

    /// Connections currently open on all loops.
    pub fn connection_count(&self) -> usize {
        // Relaxed: a snapshot of independent counters.
        self.shared
            .loops
            .iter()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .sum()
    }

    /// Number of event loops.
    pub fn loop_count(&self) -> usize {
        self.shared.loops.len()
    }

    /// The addresses the engine listens on, with the real ports.
    pub fn local_addrs(&self) -> &[ListenAddr] {
        &self.shared.addrs
    }

    /// `true` once a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Stops the engine: stop accepting, close every connection (each close
    /// callback runs), join every thread; then returns. Idempotent. Called
    /// from inside a handler (a loop thread) it only starts the stop, since
    /// the loop cannot wait for itself; [`Server::run`] returns once done.
    pub fn stop(&self) -> Result<()> {
        self.shared.request_stop();
        if self.shared.on_own_loop_thread() {
            return Ok(());
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
        Ok(())
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
                let _ = tx.send(engine.stop());
            })
            .map(drop)
            .unwrap_or_else(|e| log::error!("could not start the stop waiter: {e}"));
        Pending { rx }
    }

    /// Runs `task` on loop `index` (with that loop's [`LoopContext`]).
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
pub struct EngineBuilder<H> {
    factory: Factory<H>,
    addrs: Vec<String>,
    options: Options,
}

impl<H: EventHandler> EngineBuilder<H> {
    /// Adds an address to listen on, in URL form: `tcp://127.0.0.1:9000`,
    /// `tcp6://[::1]:9000`, `unix:///tmp/app.sock`. Port 0 picks a free port
    /// (see [`Engine::local_addrs`]). Checked by [`build`](Self::build).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.addrs.push(addr.into());
        self
    }

    /// Replaces every option at once.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Number of event loops (default: one per core; 1 ..= 1024).
    pub fn loops(mut self, n: usize) -> Self {
        self.options.loops = n;
        self
    }

    /// Size of each loop's read buffer (default 64 KiB).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.options.read_buffer_size = bytes;
        self
    }

    /// Largest block small writes are coalesced into (default 64 KiB).
    pub fn write_buffer_cap(mut self, bytes: usize) -> Self {
        self.options.write_buffer_cap = bytes;
        self
    }

    /// `TCP_NODELAY` on accepted connections (default on).
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.options.tcp_nodelay = on;
        self
    }

    /// TCP keepalive on accepted connections (default off).
    pub fn tcp_keepalive(mut self, keepalive: Option<KeepAlive>) -> Self {
        self.options.tcp_keepalive = keepalive;
        self
    }

    /// `SO_RCVBUF` for listeners and connections.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.options.recv_buffer_size = Some(bytes);
        self
    }

    /// `SO_SNDBUF` for listeners and connections.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.options.send_buffer_size = Some(bytes);
        self
    }

    /// `SO_REUSEADDR` on listeners (default on).
    pub fn reuse_addr(mut self, on: bool) -> Self {
        self.options.reuse_addr = on;
        self
    }

    /// Listen backlog (default 1024).
    pub fn listen_backlog(mut self, backlog: i32) -> Self {
        self.options.listen_backlog = backlog;
        self
    }

    /// How connections are spread over loops (default round-robin).
    pub fn load_balancer(mut self, policy: LoadBalancer) -> Self {
        self.options.load_balancer = policy;
        self
    }

    /// Messages per mailbox lane (default 1024).
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.options.mailbox_capacity = n;
        self
    }

    /// The loops' wake-up fd (default eventfd, else a pipe).
    pub fn doorbell(mut self, kind: DoorbellKind) -> Self {
        self.options.doorbell = kind;
        self
    }

    /// Calls [`EventHandler::on_tick`] on loop 0 (default off).
    pub fn ticker(mut self, on: bool) -> Self {
        self.options.ticker = on;
        self
    }

    /// Checks the settings, binds every listener and creates every mailbox.
    /// Nothing runs yet; the real addresses are in [`Server::engine`]'s
    /// [`Engine::local_addrs`].
    pub fn build(self) -> Result<Server<H>> {
        self.options.validate()?;
        if self.addrs.is_empty() {
            return Err(Error::InvalidConfig("no address to listen on".into()));
        }
        let addrs = self
            .addrs
            .iter()
            .map(|a| ListenAddr::parse(a))
            .collect::<Result<Vec<_>>>()?;
        if addrs.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidConfig("too many listen addresses".into()));
        }
        let listeners = addrs
            .iter()
            .map(|a| Listener::bind(a, &self.options))
            .collect::<Result<Vec<_>>>()?;
        let mailbox_config = MailboxConfig::new()
            .lane_capacity(self.options.mailbox_capacity)
            .doorbell(self.options.doorbell);
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
                })
                .collect(),
            acceptor: Some(acceptor_mailbox.shared_sender()),
            stopping: AtomicBool::new(false),
            run_state: Mutex::new(RunState::Built),
            finished: Condvar::new(),
            first_error: Mutex::new(None),
            addrs: listeners.iter().map(|l| l.addr.clone()).collect(),
        });
        let acceptor = Acceptor::new(
            listeners,
            acceptor_mailbox,
            loop_mailboxes.iter().map(Mailbox::sender).collect(),
            self.options.load_balancer,
            shared.clone(),
        );
        Ok(Server {
            engine: Engine { shared },
            factory: self.factory,
            loop_mailboxes,
            acceptor,
            options: self.options,
        })
    }

    /// Builds and runs the engine until it stops.
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
pub struct Server<H> {
    engine: Engine,
    factory: Factory<H>,
    loop_mailboxes: Vec<Mailbox<LoopMessage>>,
    acceptor: Acceptor,
    options: Options,
}

impl<H: EventHandler> Server<H> {
    /// A handle to the engine, for other threads.
    pub fn engine(&self) -> Engine {
        self.engine.clone()
    }

    /// Serves until the engine is stopped ([`Engine::stop`] or
    /// [`Action::Shutdown`](crate::Action::Shutdown)). Returns the first fatal
    /// error an actor met, if any.
    pub fn run(self) -> Result<()> {
        let shared = self.engine.shared.clone();
        {
            let mut state = shared.run_state.lock().unwrap_or_else(|e| e.into_inner());
            if *state != RunState::Built {
                return Err(Error::EngineStopped);
            }
            *state = RunState::Running;
        }
        let mut threads = Vec::new();
        let spawn_error = |e| Error::io("start a thread", e);
        let mut result = Ok(());
        for (index, mailbox) in self.loop_mailboxes.into_iter().enumerate() {
            let factory = self.factory.clone();
            let engine = self.engine.clone();
            let options = self.options.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringloop-loop-{index}"))
                .spawn(move || {
                    engine.shared.enter_loop_thread();
                    let handler = factory(index);
                    let outcome = EventLoop::new(index, handler, mailbox, engine.clone(), &options)
                        .and_then(EventLoop::run);
                    if let Err(e) = outcome {
                        engine.shared.record_error(e);
                        engine.shared.request_stop();
                    }
                    engine.shared.leave_loop_thread();
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                    break;
                }
            }
        }
        let acceptor = self.acceptor;
        if result.is_ok() {
            match thread::Builder::new()
                .name("ringloop-acceptor".into())
                .spawn(move || acceptor.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    result = Err(spawn_error(e));
                    shared.request_stop();
                }
            }
        }
        for t in threads {
            if t.join().is_err() {
                shared.record_error(Error::io(
                    "an actor thread panicked",
                    std::io::Error::other("panic"),
                ));
                shared.request_stop();
            }
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
