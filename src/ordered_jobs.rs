//! [`OrderedJobs`]: ordered submission to the worker pool — jobs that run
//! one at a time, in the order they were submitted, so that one
//! connection's replies leave in the order of its requests while other
//! connections' jobs run in parallel.
//!
//! Owns only the per-sequence queue and its hand-off between workers. It
//! never blocks a loop (a submit takes a short lock, never waits for a job)
//! and never holds a worker between jobs of other sequences: a sequence
//! occupies at most one worker at a time, and only while it has jobs.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::engine::EngineHandle;
use crate::runtime::worker_pool::SubmitError;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    /// Jobs waiting for the running one.
    waiting: VecDeque<Job>,
    /// A worker is running this sequence's jobs.
    running: bool,
}

/// A sequence of worker-pool jobs that run one at a time, in submission
/// order (each job starts after the previous one has returned, possibly on
/// another worker thread). Keep one per connection, in its state: its
/// replies then go out in the order of its requests, since a job's
/// `async_write` happens before the next job starts and the loop applies
/// requests in causal order. Cheap to clone; clones are the same sequence.
///
/// Only the first job of an idle sequence takes a place in the pool's
/// queue; the ones behind it wait in the sequence. Bound them as any work
/// in flight: pause reading the connection
/// ([`Conn::pause_reading`](crate::Conn::pause_reading)) past a cap of
/// [`pending`](Self::pending) jobs.
///
/// ```
/// use ringloop::{Action, Conn, EventHandler, OrderedJobs};
///
/// /// Answers each line on the worker pool; answers leave in line order.
/// struct Lines;
/// impl EventHandler for Lines {
///     type State = OrderedJobs;
///     fn on_traffic(&mut self, conn: &mut Conn<'_, OrderedJobs>) -> Action {
///         let (engine, handle) = (conn.engine(), conn.handle());
///         let jobs = conn.state_or_default().clone();
///         while let Some(end) = conn.peek(usize::MAX).iter().position(|&b| b == b'\n') {
///             let line = conn.peek(end + 1).to_vec();
///             let handle = handle.clone();
///             let job = move || drop(handle.async_write(line.to_ascii_uppercase(), |_| {}));
///             if jobs.submit(&engine, job).is_err() {
///                 conn.pause_reading(); // full or stopping: keep the line (see SubmitErrorKind)
///                 break;
///             }
///             conn.discard(end + 1);
///         }
///         Action::None
///     }
/// }
/// ```
#[derive(Clone, Default)]
pub struct OrderedJobs {
    queue: Arc<Mutex<Queue>>,
}

impl OrderedJobs {
    /// An empty sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `job` on `engine`'s worker pool after every job submitted to
    /// this sequence before it. Never waits. Fails (handing the job back)
    /// only when the sequence is idle and the pool refuses to start it —
    /// full or stopping, as [`EngineHandle::submit`]; a job queued behind a
    /// running one is always taken.
    pub fn submit(
        &self,
        engine: &EngineHandle,
        job: impl FnOnce() + Send + 'static,
    ) -> Result<(), SubmitError> {
        let mut queue = self.lock();
        queue.waiting.push_back(Box::new(job));
        if queue.running {
            return Ok(());
        }
        // Start a runner, holding the lock so that nothing queues behind
        // this job before it is known to be taken (a submit never waits, so
        // the lock is held briefly; a runner that starts at once waits for
        // it just as briefly).
        queue.running = true;
        let sequence = self.clone();
        match engine.submit(move || sequence.run()) {
            Ok(()) => Ok(()),
            Err(refused) => {
                queue.running = false;
                let job = queue
                    .waiting
                    .pop_back()
                    .expect("pushed above, under the lock");
                Err(refused.with_job(job))
            }
        }
    }

    /// Jobs submitted and not finished (the running one included).
    pub fn pending(&self) -> usize {
        let queue = self.lock();
        queue.waiting.len() + usize::from(queue.running)
    }

    /// On a worker: runs the waiting jobs one by one until none is left.
    fn run(&self) {
        while let Some(job) = self.next_or_idle() {
            // A panic is the pool's to catch and log; the guard marks the
            // sequence idle so that the next submit starts it again, with
            // the jobs still waiting first.
            let guard = Restart(self);
            job();
            std::mem::forget(guard);
        }
    }

    /// The next waiting job, or `None` after marking the sequence idle.
    fn next_or_idle(&self) -> Option<Job> {
        let mut queue = self.lock();
        let next = queue.waiting.pop_front();
        if next.is_none() {
            queue.running = false;
        }
        next
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Dropped only while a job unwinds: marks the sequence idle, so the next
/// submit starts it again instead of queueing behind a job that is gone;
/// the jobs still waiting then run first, in order.
struct Restart<'a>(&'a OrderedJobs);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        self.0.lock().running = false;
    }
}

impl fmt::Debug for OrderedJobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderedJobs")
            .field("pending", &self.pending())
            .finish()
    }
}
