//! Echo server with blocking logic (gnet's documented pattern): the traffic
//! callback copies the bytes and hands them to the worker pool; a worker
//! sleeps `--delay-ms` (standing in for a database call) and writes them
//! back with `async_write`.
//!
//! ```text
//! cargo run --release --example echo_pool -- [ADDR ...] [--loops N] [--delay-ms 100] [--workers N]
//! ```
//!
//! Bytes stay in order per connection: each connection has at most one job
//! in flight. The worker writes, then wakes the connection; both messages
//! come from the same thread, so the loop applies them in that order, and the
//! woken traffic callback starts the next job with whatever arrived meanwhile.

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
    /// Set by the worker once its reply is queued; `None` when idle.
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
            // Release: the loop that sees it also sees the write applied.
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
