//! Echo server with blocking logic (gnet's documented pattern): the traffic
//! callback copies the bytes and hands them to the worker pool; a worker
//! sleeps `--delay-ms` (standing in for a database call) and writes them
//! back with `async_write`.
//!
//! ```text
//! cargo run --release --example echo_pool -- [ADDR ...] [--loops N] [--delay-ms 100] [--workers N]
//! ```
//!
//! Bytes stay in order per connection, whatever worker runs each job:
//!
//! * each connection has at most one job in flight: the traffic callback
//!   starts the next job only once it has seen the current one's `done` flag;
//! * the worker sets `done` after its `async_write` returned, so that write
//!   happens-before everything the loop does after seeing the flag,
//!   including submitting the next job, whose write (on another worker
//!   thread, through another mailbox lane) therefore happens after it;
//! * a loop applies the writes, wakes and closes sent to it in causal order
//!   across threads: a request that happens-before another is applied first
//!   (ringloop-actors' mailbox orders its lanes by ticket). So the next
//!   job's write can never overtake this one.
//!
//! The worker then wakes the connection (same thread, after the write), and
//! the woken traffic callback starts the next job with whatever arrived
//! meanwhile. Note what the flag does *not* mean: when the loop sees `done`,
//! the write has been sent to the loop, not necessarily applied yet; it is
//! the ordering guarantee above that makes that enough.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringloop::{Action, Conn, Engine, EventHandler};

/// Per-connection state.
#[derive(Default)]
struct Session {
    /// Bytes received while a job was in flight.
    pending: Vec<u8>,
    /// Set by the worker once its `async_write` returned (the reply is on its
    /// way to the loop, ordered before any later request); `None` when idle.
    in_flight: Option<Arc<AtomicBool>>,
}

struct EchoPool {
    delay: Duration,
}

impl EventHandler for EchoPool {
    type State = Session;

    fn on_open(&mut self, conn: &mut Conn<'_, Session>) -> Action {
        conn.set_state(Session::default());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Session>) -> Action {
        let data = conn.read_all();
        let engine = conn.engine();
        let handle = conn.handle();
        let Some(session) = conn.state_mut() else {
            return Action::Close;
        };
        session.pending.extend_from_slice(data);
        if let Some(done) = &session.in_flight {
            // Acquire: pairs with the worker's Release below.
            if !done.load(Ordering::Acquire) {
                return Action::None; // the current job's wake will pick it up
            }
            session.in_flight = None;
        }
        if session.pending.is_empty() {
            return Action::None;
        }
        let bytes = std::mem::take(&mut session.pending);
        let done = Arc::new(AtomicBool::new(false));
        session.in_flight = Some(done.clone());
        let delay = self.delay;
        let job = move || {
            std::thread::sleep(delay); // the "blocking logic"
            let _ = handle.async_write(bytes, |_| {});
            // Release: the loop that sees it (Acquire) is causally after the
            // write, so the next job's write is applied after this one.
            done.store(true, Ordering::Release);
            let _ = handle.wake();
        };
        match engine.submit(job) {
            Ok(()) => Action::None,
            Err(e) => {
                eprintln!("echo_pool: {e}; closing the connection");
                Action::Close
            }
        }
    }
}

fn main() {
    let args = common::Args::parse(
        "echo_pool [ADDR ...] [--loops N] [--delay-ms MS] [--workers N]",
        &["delay-ms", "workers"],
        &[],
    );
    let delay = Duration::from_millis(args.number("delay-ms", 100));
    let mut builder = Engine::builder(move |_| EchoPool { delay });
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    if let Some(n) = args.text("workers") {
        builder = builder.workers(n.parse().unwrap_or(0));
    }
    common::serve("echo_pool", builder);
}
