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
//! without progress. A job queue
//! that is full closes the connection (the pool holds
//! `--workers` × 4096 jobs at most). A stop waits at most 30 s for running
//! jobs (the engine's pool shutdown timeout), and a second Ctrl-C exits at
//! once.

mod common;

use std::time::Duration;

use ringloop::{Action, Conn, Engine, EventHandler};

struct EchoPool {
    delay: Duration,
}

impl EventHandler for EchoPool {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let bytes = conn.read_all().to_vec();
        if bytes.is_empty() {
            return Action::None;
        }
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
        match conn.engine().submit(job) {
            Ok(()) => {
                conn.pause_reading(); // one job in flight per connection
                Action::None
            }
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
