//! The worker-pool actor: threads that run blocking user work (a database
//! call, a sleep, heavy CPU) off the event loops.
//!
//! Owns the job queue (a bounded `crossbeam-channel`) and the worker threads.
//! It must never run a job on a loop thread and never let a submit block a
//! loop: [`WorkerPool::submit`] hands the job back when the queue is full.
//! Workers answer connections through [`ConnHandle`](crate::ConnHandle)s;
//! each worker thread gets its own SPSC lane into each loop's mailbox on its
//! first send, so the hot path stays single-producer.
//!
//! A job that panics is caught and logged; its worker carries on.
//!
//! # Shutdown
//!
//! [`WorkerPool::shutdown`] refuses new jobs (a `submit_wait` already waiting
//! for room still gets its job in), then applies the
//! [`PoolShutdown`] policy to the queued ones — [`Finish`](PoolShutdown::Finish)
//! runs them all (the default), [`Cancel`](PoolShutdown::Cancel) drops them
//! unrun — and joins every worker. [`WorkerPool::shutdown_timeout`] bounds
//! that wait; an engine uses it. An engine shuts its pool down after it has
//! stopped accepting and before its loops close their connections, so the
//! replies of finished jobs still reach their connections.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, RwLock};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::error::{Error, Result};
use crate::options::PoolShutdown;
use crate::runtime::context;
use crate::runtime::sync::{Arc, AtomicBool, Ordering};

type Job = Box<dyn FnOnce() + Send>;

/// Why a job was not queued; the job is inside.
///
/// ```
/// use ringloop::{PoolShutdown, WorkerPool};
/// let pool = WorkerPool::new(1, 1, PoolShutdown::Finish)?;
/// pool.shutdown();
/// match pool.submit(|| println!("never")) {
///     Ok(()) => unreachable!(),
///     Err(e) => {
///         assert!(!e.is_full()); // shut down, not full
///         let job = e.into_job(); // the job is handed back
///         job(); // run it here instead
///     }
/// }
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct SubmitError {
    job: Job,
    kind: SubmitErrorKind,
}

/// Why [`submit`](WorkerPool::submit) refused a job: see
/// [`SubmitError::kind`]. The two call for opposite handling, and neither
/// for closing the connection, which would throw away the replies of its
/// jobs still queued.
///
/// - [`Full`](Self::Full): the pool is busy. Back off and keep the request:
///   leave its bytes unconsumed, pause reading the connection
///   ([`Conn::pause_reading`](crate::Conn::pause_reading)) and resume it
///   later ([`ConnHandle::resume_reading`](crate::ConnHandle::resume_reading)
///   runs `on_traffic` again for the bytes left).
/// - [`Stopped`](Self::Stopped): the engine is stopping. Stop reading and
///   leave the connection open: the engine closes it (with
///   [`CloseReason::Shutdown`](crate::CloseReason::Shutdown)) once the jobs
///   already queued have run and their replies are written.
///
/// ```
/// use ringloop::{Action, Conn, EventHandler, SubmitErrorKind};
///
/// struct Rpc;
/// impl EventHandler for Rpc {
///     type State = ();
///     fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
///         let request = conn.peek(usize::MAX).to_vec(); // consumed once queued
///         let handle = conn.handle();
///         let job = move || drop(handle.async_write(request, |_| {}));
///         match conn.engine().submit(job) {
///             Ok(()) => {
///                 conn.read_all();
///             }
///             // Busy: keep the request, read nothing more, retry later
///             // (say, from `on_tick` with `ConnHandle::resume_reading`).
///             Err(e) if e.kind() == SubmitErrorKind::Full => conn.pause_reading(),
///             // Stopping: the queued replies still go out, then the engine
///             // closes the connection.
///             Err(_) => conn.pause_reading(),
///         }
///         Action::None
///     }
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// The job queue is full: try again later.
    Full,
    /// The pool is shut down (the engine is stopping): it takes no more jobs.
    Stopped,
}

impl SubmitError {
    pub(crate) fn stopped(job: Job) -> Self {
        Self {
            job,
            kind: SubmitErrorKind::Stopped,
        }
    }

    fn full(job: Job) -> Self {
        Self {
            job,
            kind: SubmitErrorKind::Full,
        }
    }

    /// The same refusal, carrying `job` instead.
    pub(crate) fn with_job(self, job: Job) -> Self {
        Self {
            job,
            kind: self.kind,
        }
    }

    /// Why the job was refused.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, SubmitErrorKind, WorkerPool};
    /// let pool = WorkerPool::new(1, 1, PoolShutdown::Finish)?;
    /// pool.shutdown();
    /// let err = pool.submit(|| {}).unwrap_err();
    /// assert_eq!(err.kind(), SubmitErrorKind::Stopped);
    /// assert!(err.is_stopped());
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn kind(&self) -> SubmitErrorKind {
        self.kind
    }

    /// `true` if the pool is shut down (the engine is stopping): see
    /// [`SubmitErrorKind::Stopped`].
    pub fn is_stopped(&self) -> bool {
        self.kind == SubmitErrorKind::Stopped
    }

    /// `true` if the queue was full (try again later); `false` if the pool is
    /// shut down.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// use std::sync::mpsc;
    /// let pool = WorkerPool::new(1, 1, PoolShutdown::Finish)?;
    /// let (block_tx, block_rx) = mpsc::channel::<()>();
    /// let (started_tx, started_rx) = mpsc::channel();
    /// pool.submit(move || {
    ///     started_tx.send(()).unwrap();
    ///     let _ = block_rx.recv(); // hold the only worker
    /// }).unwrap();
    /// started_rx.recv().unwrap();
    /// pool.submit(|| {}).unwrap(); // fills the one-job queue
    /// let err = pool.submit(|| {}).unwrap_err();
    /// assert!(err.is_full()); // try again later
    /// drop(block_tx);
    /// pool.shutdown();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        self.kind == SubmitErrorKind::Full
    }

    /// Takes the job back, to run it elsewhere or later.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(1, 8, PoolShutdown::Finish)?;
    /// pool.shutdown();
    /// let err = pool.submit(|| println!("ran on the caller's thread")).unwrap_err();
    /// (err.into_job())(); // run it here after all
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn into_job(self) -> Box<dyn FnOnce() + Send> {
        self.job
    }
}

impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            SubmitErrorKind::Full => "the worker pool's job queue is full",
            SubmitErrorKind::Stopped => "the worker pool is shut down",
        })
    }
}

impl std::error::Error for SubmitError {}

struct Inner {
    /// The queue's sending side; taken (dropped) by shutdown, after which
    /// workers finish what is queued and see the queue disconnected. Never
    /// held locked across a blocking call.
    jobs: RwLock<Option<Sender<Job>>>,
    /// For `queued()`.
    queue: Receiver<Job>,
    /// Shared with the workers, which outlive the pool after a timed-out
    /// shutdown and must still see it.
    cancelled: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
    policy: PoolShutdown,
}

/// A pool of worker threads with a bounded job queue (see the module docs).
/// Cheap to clone; every clone is the same pool.
///
/// ```
/// use ringloop::{PoolShutdown, WorkerPool};
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let pool = WorkerPool::new(2, 64, PoolShutdown::Finish)?;
/// let done = Arc::new(AtomicUsize::new(0));
/// for _ in 0..10 {
///     let done = done.clone();
///     pool.submit_wait(move || {
///         done.fetch_add(1, Ordering::SeqCst);
///     })
///     .unwrap();
/// }
/// pool.shutdown(); // Finish: every queued job runs first
/// assert_eq!(done.load(Ordering::SeqCst), 10);
/// # Ok::<(), ringloop::Error>(())
/// ```
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

impl WorkerPool {
    /// Starts `workers` threads sharing a queue of at most `queue_capacity`
    /// jobs.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(4, 1024, PoolShutdown::Finish)?;
    /// assert_eq!(pool.workers(), 4);
    /// pool.shutdown();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn new(workers: usize, queue_capacity: usize, policy: PoolShutdown) -> Result<Self> {
        if workers == 0 || workers > 4096 {
            return Err(Error::InvalidConfig(format!(
                "{workers} workers is outside 1 ..= 4096"
            )));
        }
        if queue_capacity == 0 {
            return Err(Error::InvalidConfig(
                "the job queue needs room for at least one job".into(),
            ));
        }
        let (jobs, queue) = crossbeam_channel::bounded(queue_capacity);
        let inner = Arc::new(Inner {
            jobs: RwLock::new(Some(jobs)),
            queue: queue.clone(),
            cancelled: Arc::new(AtomicBool::new(false)),
            threads: Mutex::new(Vec::with_capacity(workers)),
            workers,
            policy,
        });
        let pool = Self { inner };
        for index in 0..workers {
            let queue = queue.clone();
            let cancelled = pool.inner.cancelled.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringloop-worker-{index}"))
                .spawn(move || work(queue, cancelled));
            match spawned {
                Ok(t) => pool
                    .inner
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t),
                Err(e) => {
                    pool.shutdown();
                    return Err(Error::io("start a worker thread", e));
                }
            }
        }
        Ok(pool)
    }

    /// Queues `job` without waiting; hands it back if the queue is full or
    /// the pool is shut down. Safe to call from handlers (never blocks).
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(2, 64, PoolShutdown::Finish)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// if let Err(e) = pool.submit(move || tx.send(2 + 2).unwrap()) {
    ///     // Full or shut down: the job comes back in `e`.
    ///     drop(e.into_job());
    /// }
    /// assert_eq!(rx.recv().unwrap(), 4);
    /// pool.shutdown();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), SubmitError> {
        self.submit_boxed(Box::new(job))
    }

    fn submit_boxed(&self, job: Job) -> Result<(), SubmitError> {
        let jobs = self.inner.jobs.read().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = jobs.as_ref() else {
            return Err(SubmitError::stopped(job));
        };
        // try_send never blocks, so the read lock is held only briefly.
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(SubmitError::full(job)),
            Err(TrySendError::Disconnected(job)) => Err(SubmitError::stopped(job)),
        }
    }

    /// Queues `job`, waiting for room while the queue is full. On an event
    /// loop's thread it does not wait (a loop must never block) and behaves
    /// like [`submit`](Self::submit).
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(1, 1, PoolShutdown::Finish)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// for i in 0..5 {
    ///     let tx = tx.clone();
    ///     // The queue holds one job: this waits for room instead of failing.
    ///     pool.submit_wait(move || tx.send(i).unwrap()).unwrap();
    /// }
    /// pool.shutdown();
    /// assert_eq!(rx.try_iter().count(), 5);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn submit_wait(&self, job: impl FnOnce() + Send + 'static) -> Result<(), SubmitError> {
        if context::on_any_loop() {
            return self.submit(job);
        }
        // Wait on a clone of the sender, outside the lock: a shutdown (even
        // one started by a job) must never wait for this send.
        let jobs = self
            .inner
            .jobs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let job: Job = Box::new(job);
        let Some(jobs) = jobs else {
            return Err(SubmitError::stopped(job));
        };
        jobs.send(job)
            .map_err(|crossbeam_channel::SendError(job)| SubmitError::stopped(job))
    }

    /// Number of worker threads.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(3, 16, PoolShutdown::Finish)?;
    /// assert_eq!(pool.workers(), 3);
    /// pool.shutdown();
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn workers(&self) -> usize {
        self.inner.workers
    }

    /// Jobs waiting in the queue.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(1, 16, PoolShutdown::Finish)?;
    /// assert_eq!(pool.queued(), 0);
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// pool.submit(move || { let _ = rx.recv(); }).unwrap(); // occupies the worker
    /// pool.submit(|| {}).unwrap();
    /// pool.submit(|| {}).unwrap();
    /// assert!(pool.queued() >= 2); // the worker may not have taken the first yet
    /// drop(tx);
    /// pool.shutdown();
    /// assert_eq!(pool.queued(), 0);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// Refuses new jobs, applies the shutdown policy to queued ones and joins
    /// every worker. Idempotent. Called from a worker thread it does not join
    /// (a worker cannot wait for itself); the workers still exit.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// let pool = WorkerPool::new(2, 16, PoolShutdown::Finish)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.submit(move || tx.send("finished").unwrap()).unwrap();
    /// pool.shutdown(); // Finish: queued jobs run, then the workers are joined
    /// pool.shutdown(); // idempotent
    /// assert_eq!(rx.recv().unwrap(), "finished");
    /// assert!(pool.submit(|| {}).is_err()); // refused from now on
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn shutdown(&self) {
        self.close_queue();
        if context::on_worker() {
            return;
        }
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// As [`shutdown`](Self::shutdown), but waits at most `limit` for the
    /// workers: past it, jobs still queued are dropped unrun (whatever the
    /// policy), the workers still running a job are left to finish it on
    /// their own, and it returns `false`. `true` if every worker was joined
    /// in time. An engine stops its pool this way, with
    /// [`EngineBuilder::pool_shutdown_timeout`](crate::EngineBuilder::pool_shutdown_timeout),
    /// so a job that never ends cannot hang a stop.
    ///
    /// ```
    /// use ringloop::{PoolShutdown, WorkerPool};
    /// use std::time::Duration;
    /// let pool = WorkerPool::new(1, 16, PoolShutdown::Finish)?;
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let (started_tx, started) = std::sync::mpsc::channel();
    /// pool.submit(move || {
    ///     started_tx.send(()).unwrap();
    ///     let _ = rx.recv(); // a job that does not end on its own
    /// })
    /// .unwrap();
    /// started.recv().unwrap();
    /// assert!(!pool.shutdown_timeout(Duration::from_millis(50))); // gave up waiting
    /// drop(tx); // the job ends later, on its own
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    pub fn shutdown_timeout(&self, limit: std::time::Duration) -> bool {
        self.close_queue();
        if context::on_worker() {
            return true;
        }
        let deadline = std::time::Instant::now() + limit;
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        // std joins have no timeout: poll `is_finished` (a stop is no hot path).
        while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(5));
        }
        let busy = threads.iter().filter(|t| !t.is_finished()).count();
        if busy > 0 {
            // Release: as in `close_queue`; workers drop what is still queued.
            self.inner.cancelled.store(true, Ordering::Release);
            log::warn!(
                "worker pool: {busy} job(s) still running after {limit:?}; stopping without them ({} queued job(s) dropped)",
                self.queued()
            );
        }
        for t in threads {
            if t.is_finished() {
                let _ = t.join();
            }
            // else: detached; it exits after its job (or with the process).
        }
        busy == 0
    }

    /// Refuses new jobs and applies the policy to the queued ones.
    fn close_queue(&self) {
        let sender = {
            let mut jobs = self.inner.jobs.write().unwrap_or_else(|e| e.into_inner());
            if jobs.is_some() && self.inner.policy == PoolShutdown::Cancel {
                // Release: workers that see it (Acquire) drop what is queued.
                // Set before the queue closes, so a submit refused as
                // "shut down" implies queued jobs are already cancelled.
                self.inner.cancelled.store(true, Ordering::Release);
            }
            jobs.take()
        };
        // Dropping the sender (outside the lock) disconnects the queue once
        // any in-flight `submit_wait` is through: workers run what is queued
        // (or drop it, when cancelled) and then exit.
        drop(sender);
    }
}

fn work(queue: Receiver<Job>, cancelled: Arc<AtomicBool>) {
    let _worker = context::enter_worker();
    // Ends once the pool's sender is gone and the queue is empty.
    while let Ok(job) = queue.recv() {
        // Acquire: pairs with the Release in `shutdown`.
        if cancelled.load(Ordering::Acquire) {
            drop(job);
            continue;
        }
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a worker-pool job panicked; the worker carries on");
        }
    }
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("workers", &self.inner.workers)
            .field("queued", &self.queued())
            .field("policy", &self.inner.policy)
            .finish()
    }
}
