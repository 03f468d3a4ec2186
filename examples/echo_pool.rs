//! Echo server with blocking logic (gnet's documented pattern): the traffic
//! callback copies the bytes and hands them to the worker pool; a worker
//! sleeps `--delay-ms` (standing in for a database call) and writes them
//! back with `async_write`.
//!
//! ```text
//! cargo run --release --example echo_pool -- [ADDR ...] [--loops N] [--delay-ms 100] [--workers N] [--queue JOBS]
//! ```
//!
//! Bytes stay in order per connection: each connection has at most one job
//! in flight. While it runs the connection is not read
//! ([`Conn::pause_reading`]); the worker writes the reply, and the write's
//! completion resumes the reading through the connection's handle, so the
//! bytes that arrived meanwhile start the next job only after the reply.
//! (A worker may equally signal the loop through a flag it sets after its
//! `async_write` returns: the loop applies requests from any threads in
//! causal order, so a later job's write never overtakes an earlier one;
//! `tests/async_writes.rs` runs that pattern.)
//!
//! # What it bounds
//!
//! A connection holds at most one read (64 KiB) in its job: what the client
//! sends while the job runs waits in the kernel's socket buffers, and TCP
//! slows the client down, instead of piling up in the server. A client that
//! does not read its echoes is not read either: the engine holds the
//! reply's completion above its water marks (64 KiB queued), and only that
//! completion resumes the reading; the write timeout drops it after 60 s
//! without progress. A job queue that is full (`--queue`, 4096 jobs) does not close
//! the connection: the bytes stay unconsumed, reading stays paused, and the
//! ticker (loop 0's, for every loop) resumes it 10 ms later to submit them again, so a burst of
//! clients is slowed down, not dropped.
//!
//! # Stopping
//!
//! At Ctrl-C the pool finishes its queued jobs and the loops keep serving
//! until it has, so every job's reply is written. A submit refused because
//! the engine is stopping ([`SubmitErrorKind::Stopped`]) leaves the
//! connection open and paused: closing it there would throw away the replies
//! of its jobs still queued. The engine then closes it
//! ([`CloseReason::Shutdown`](ringloop::CloseReason::Shutdown)) after those
//! replies. A stop waits at most 30 s for running jobs (the engine's pool
//! shutdown timeout), and a second Ctrl-C exits at once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler, LoopContext, SubmitErrorKind};

/// How long a connection refused by a full job queue waits to try again.
const BACK_OFF: Duration = Duration::from_millis(10);

/// Connections whose job the full queue refused, from every loop: the
/// ticker (on loop 0 only) resumes them.
type BackedOff = Arc<Mutex<Vec<ConnHandle>>>;

struct EchoPool {
    delay: Duration,
    backed_off: BackedOff,
}

impl EventHandler for EchoPool {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        // Copied, not consumed: a refused job leaves the bytes for later.
        let bytes = conn.peek(usize::MAX).to_vec();
        if bytes.is_empty() {
            return Action::None;
        }
        let len = bytes.len();
        let handle = conn.handle();
        let delay = self.delay;
        let job = move || {
            std::thread::sleep(delay); // the "blocking logic"
            let resume = handle.clone();
            // Read on once the reply is written or queued within the water
            // marks: the engine holds this completion while the client is
            // not reading its echoes, so it is not read either.
            let _ = handle.async_write(bytes, move |written| {
                if written.is_ok() {
                    let _ = resume.resume_reading();
                }
            });
        };
        // One job in flight per connection; on any refusal, nothing more is
        // read either.
        conn.pause_reading();
        match conn.engine().submit(job) {
            Ok(()) => {
                conn.discard(len);
            }
            // Busy: back off, keep the bytes, try again on the next tick.
            Err(e) if e.kind() == SubmitErrorKind::Full => {
                self.backed_off.lock().unwrap().push(conn.handle())
            }
            // Stopping: stay open so the replies still queued go out; the
            // engine closes the connection after them.
            Err(_) => {}
        }
        Action::None
    }

    fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
        let backed_off = std::mem::take(&mut *self.backed_off.lock().unwrap());
        for conn in backed_off {
            // Runs `on_traffic` again for the bytes left unconsumed.
            let _ = conn.resume_reading();
        }
        (BACK_OFF, Action::None)
    }
}

fn main() {
    let args = common::Args::parse(
        "echo_pool [ADDR ...] [--loops N] [--delay-ms MS] [--workers N] [--queue JOBS]",
        &["delay-ms", "workers", "queue"],
        &[],
    );
    let delay = Duration::from_millis(args.number("delay-ms", 100));
    let backed_off = BackedOff::default();
    let mut builder = Engine::builder(move |_| EchoPool {
        delay,
        backed_off: backed_off.clone(),
    })
    .ticker(true);
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    if let Some(n) = args.text("workers") {
        builder = builder.workers(n.parse().unwrap_or(0));
    }
    if let Some(n) = args.text("queue") {
        builder = builder.job_queue_capacity(n.parse().unwrap_or(0));
    }
    common::serve("echo_pool", builder);
}
