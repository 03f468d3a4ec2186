//! The idiomatic monoio echo server: monoio's io_uring runtime on one thread
//! (thread-per-core, so one thread is one core's worth), a task per
//! connection, owned buffers (`read` takes the `Vec` and gives it back with
//! the bytes), `write_all` back. The peer ringloop's io_uring driver has to
//! match (issue 14).

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use nix::sys::signal::{SigSet, Signal};

use crate::Result;

/// Serves until SIGINT or SIGTERM, then exits the process with status 0
/// (monoio has no signal support; a thread waits for the signals instead).
pub fn run(addr: SocketAddr, buf: usize) -> Result<()> {
    // Blocked before any other thread exists, so only `wait` below sees them.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block()?;
    std::thread::spawn(move || {
        let _ = mask.wait();
        eprintln!("monoio echo: signal received, stopping");
        std::process::exit(0);
    });
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()?;
    runtime.block_on(serve(addr, buf))
}

async fn serve(addr: SocketAddr, buf: usize) -> Result<()> {
    let listener = TcpListener::bind(addr)?;
    println!(
        "monoio echo listening on tcp://{} (1 thread, io_uring, {buf}-byte buffers)",
        listener.local_addr()?
    );
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(echo(stream, buf));
            }
            Err(e) => {
                // For example EMFILE: back off instead of spinning.
                eprintln!("monoio echo: accept: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn echo(mut stream: TcpStream, size: usize) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(size);
    loop {
        let (read, back) = stream.read(buf).await;
        buf = back;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let (written, back) = stream.write_all(buf).await;
        buf = back;
        if written.is_err() {
            return;
        }
        buf.clear();
    }
}
