//! The may_minihttp peer for the HTTP benchmark, set up as in its own
//! TechEmpower entry: `may` coroutines (stackful, on N worker threads), one
//! coroutine per connection, 4 KiB stacks, `GET /plaintext` answered with
//! `Content-Type: text/plain` and `Hello, World!` (may_minihttp adds `Server`
//! and a cached `Date` itself, and pipelines: it parses every request of a
//! read and writes the replies together). Like its TechEmpower entry it
//! leaves `TCP_NODELAY` off (may_minihttp does not set it).
//!
//! may_minihttp has no shutdown, so the main thread blocks SIGINT and SIGTERM
//! before any worker starts (they inherit the mask), waits for one with
//! `sigwait`, and exits the process with status 0.

use std::io;
use std::net::SocketAddr;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};
use nix::sys::signal::{SigSet, Signal};

use crate::Result;

struct Plaintext;

impl HttpService for Plaintext {
    fn call(&mut self, req: Request<'_, '_, '_>, rsp: &mut Response<'_>) -> io::Result<()> {
        match req.path() {
            "/plaintext" | "/" => {
                rsp.header("Content-Type: text/plain").body("Hello, World!");
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Plaintext;

    fn new_service(&self, _id: usize) -> Plaintext {
        Plaintext
    }
}

/// Serves until SIGINT or SIGTERM, then exits the process.
pub fn run(addr: SocketAddr, threads: usize) -> Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block()?;
    may::config()
        .set_workers(threads)
        .set_pool_capacity(1000)
        .set_stack_size(0x1000);
    let _server = Factory.start(addr)?;
    println!("may_minihttp listening on tcp://{addr} ({threads} worker threads)");
    let signal = signals.wait()?;
    eprintln!("may_minihttp: {signal:?} received, stopping");
    std::process::exit(0)
}
