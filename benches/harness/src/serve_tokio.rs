//! The idiomatic tokio echo server: multi-thread runtime, one task per
//! connection, read into a buffer and `write_all` it back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::Result;

/// Per-connection read buffer by default: one 16 KiB message fits in one read.
pub const DEFAULT_BUF: usize = 16 * 1024;

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr, threads: usize, buf: usize) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    runtime.block_on(serve(addr, threads, buf))?;
    // Connection tasks are dropped with the runtime, which closes their sockets.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(addr: SocketAddr, threads: usize, buf: usize) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind(addr).await?;
    println!(
        "tokio echo listening on tcp://{} ({threads} worker threads, {buf}-byte buffers)",
        listener.local_addr()?
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(echo(stream, buf));
                }
                Err(e) => {
                    // For example EMFILE: back off instead of spinning.
                    eprintln!("tokio echo: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("tokio echo: signal received, stopping");
    Ok(())
}

async fn echo(mut stream: TcpStream, buf: usize) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; buf];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
