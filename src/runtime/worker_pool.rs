//! The worker-pool actor: threads that run blocking user work (a database
//! call, a sleep, heavy CPU) off the event loops.
//!
//! Owns the worker threads and their job queue (`runtime::job_queue`: one
//! lock over the jobs and the shutdown phase, model-checked under loom).
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
//! [`WorkerPool::shutdown`] refuses new jobs (a `submit_wait` still waiting
//! for room gets its job back, refused as stopped), then applies the
//! [`PoolShutdown`] policy to the queued ones — [`Finish`](PoolShutdown::Finish)
//! runs them all (the default), [`Cancel`](PoolShutdown::Cancel) drops them
//! unrun, at once, on the thread that shuts down — and joins every worker.
//! Either way every job the pool took is run exactly once or dropped unrun
//! exactly once (its captures' `Drop` is the report: a dropped `ConnHandle`,
//! a disconnected reply channel), and none is taken after the shutdown.
//! [`WorkerPool::shutdown_timeout`] bounds that wait; an engine uses it. An engine shuts its pool down after it has
//! stopped accepting and before its loops close their connections, so the
//! replies of finished jobs still reach their connections.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::PoolShutdown;
use crate::runtime::context;
use crate::runtime::job_queue::{JobQueue, Refused};
use crate::runtime::sync::thread::{self, JoinHandle};
use crate::runtime::sync::{Arc, Mutex};

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
    /// The jobs, the shutdown phase and the workers' attendance, shared
    /// with the workers (which outlive the pool after a timed-out shutdown).
    queue: Arc<JobQueue<Job>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    workers: usize,
    policy: PoolShutdown,
}

impl Drop for Inner {
    /// The last handle gone without a shutdown: the workers still finish
    /// (or, under `Cancel`, drop) what is queued and exit.
    fn drop(&mut self) {
        drop(close_queue(&self.queue, self.policy));
    }
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
        let queue = Arc::new(JobQueue::new(queue_capacity));
        let inner = Arc::new(Inner {
            queue: queue.clone(),
            threads: Mutex::new(Vec::with_capacity(workers)),
            workers,
            policy,
        });
        let pool = Self { inner };
        for index in 0..workers {
            // Counted in before it starts: a shutdown racing the start
            // still waits for it.
            queue.worker_started();
            let worker_queue = queue.clone();
            let spawned = thread::Builder::new()
                .name(format!("ringloop-worker-{index}"))
                .spawn(move || work(&worker_queue));
            match spawned {
                Ok(t) => pool
                    .inner
                    .threads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t),
                Err(e) => {
                    queue.worker_exited(); // never started
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
        self.inner
            .queue
            .try_push(job)
            .map_err(|(job, why)| match why {
                Refused::Full => SubmitError::full(job),
                Refused::Closed => SubmitError::stopped(job),
            })
    }

    /// Queues `job`, waiting for room while the queue is full; if the pool
    /// shuts down meanwhile, the job comes back refused as stopped. On an
    /// event loop's thread it does not wait (a loop must never block) and
    /// behaves like [`submit`](Self::submit).
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
        self.inner
            .queue
            .push_wait(Box::new(job))
            .map_err(SubmitError::stopped)
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
        drop(close_queue(&self.inner.queue, self.inner.policy));
        if context::on_worker() {
            return;
        }
        for t in self.take_threads() {
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
    pub fn shutdown_timeout(&self, limit: Duration) -> bool {
        drop(close_queue(&self.inner.queue, self.inner.policy));
        if context::on_worker() {
            return true;
        }
        let threads = self.take_threads();
        let busy = self
            .inner
            .queue
            .wait_for_workers(Some(Instant::now() + limit));
        if busy > 0 {
            let unrun = self.inner.queue.cancel();
            log::warn!(
                "worker pool: {busy} job(s) still running after {limit:?}; stopping without them ({} queued job(s) dropped)",
                unrun.len()
            );
            drop(unrun); // after the lock: a job's captures may run code on drop
                         // The threads are detached: each exits after its job (or with
                         // the process).
            return false;
        }
        for t in threads {
            let _ = t.join(); // each has counted itself out: it is ending
        }
        true
    }

    /// Waits for every worker to exit, even detached ones (for the models,
    /// which must see a timed-out shutdown's jobs end).
    #[cfg(all(test, loom))]
    pub(crate) fn wait_for_workers(&self) {
        self.inner.queue.wait_for_workers(None);
    }

    fn take_threads(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Refuses new jobs and applies the policy to the queued ones: under
/// `Cancel` they come back, for the caller to drop outside the queue's
/// lock; under `Finish` the workers run them.
fn close_queue(queue: &JobQueue<Job>, policy: PoolShutdown) -> VecDeque<Job> {
    match policy {
        PoolShutdown::Cancel => queue.cancel(),
        PoolShutdown::Finish => {
            queue.close();
            VecDeque::new()
        }
    }
}

/// A worker: runs jobs until the queue is closed and empty, or cancelled.
fn work(queue: &JobQueue<Job>) {
    /// Counts the worker out however its loop ends.
    struct Attendance<'a>(&'a JobQueue<Job>);
    impl Drop for Attendance<'_> {
        fn drop(&mut self) {
            self.0.worker_exited();
        }
    }
    let _attendance = Attendance(queue);
    let _worker = context::enter_worker();
    while let Some(job) = queue.pop() {
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
