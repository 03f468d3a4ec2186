//! The idiomatic tokio echo servers: one task per connection, read into a
//! buffer and `write_all` it back. `tokio` echoes at once; `tokio-blocking`
//! first hands the bytes to `spawn_blocking`, which sleeps a fixed delay
//! (standing in for blocking logic such as a database call), the tokio
//! counterpart of ringloop's `echo_pool` example.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::Result;

/// Per-connection read buffer by default: one 16 KiB message fits in one read.
pub const DEFAULT_BUF: usize = 16 * 1024;

/// The runtime of every tokio peer.
#[derive(Clone, Copy, Debug)]
pub struct Runtime {
    /// Worker threads of a multi-thread runtime; ignored with `current_thread`.
    pub threads: usize,
    /// A `current_thread` runtime: everything on the thread that serves.
    pub current_thread: bool,
    /// Upper bound of the blocking pool (`spawn_blocking` threads).
    pub blocking_threads: Option<usize>,
}

impl Runtime {
    /// Builds the runtime.
    pub fn build(&self) -> Result<tokio::runtime::Runtime> {
        let mut builder = if self.current_thread {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(self.threads);
            b
        };
        if let Some(n) = self.blocking_threads {
            builder.max_blocking_threads(n);
        }
        Ok(builder.enable_all().build()?)
    }

    /// `current_thread` or `N worker threads`, for messages.
    pub fn describe(&self) -> String {
        if self.current_thread {
            "current_thread runtime".to_string()
        } else {
            format!("{} worker threads", self.threads)
        }
    }
}

/// What each connection task does with the bytes it reads.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// Write them straight back.
    Echo,
    /// Sleep this long on the blocking pool, then write them back.
    Blocking(Duration),
}

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr, runtime: Runtime, buf: usize, mode: Mode) -> Result<()> {
    let rt = runtime.build()?;
    rt.block_on(serve(addr, runtime, buf, mode))?;
    // Connection tasks are dropped with the runtime, which closes their sockets.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(addr: SocketAddr, runtime: Runtime, buf: usize, mode: Mode) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind(addr).await?;
    let what = match mode {
        Mode::Echo => String::new(),
        Mode::Blocking(d) => format!(
            ", spawn_blocking sleeping {} ms, at most {} blocking threads",
            d.as_millis(),
            runtime
                .blocking_threads
                .map_or("tokio's default".to_string(), |n| n.to_string())
        ),
    };
    println!(
        "tokio echo listening on tcp://{} ({}, {buf}-byte buffers{what})",
        listener.local_addr()?,
        runtime.describe()
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    match mode {
                        Mode::Echo => tokio::spawn(echo(stream, buf)),
                        Mode::Blocking(delay) => tokio::spawn(echo_blocking(stream, buf, delay)),
                    };
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

/// One blocking job in flight per connection, like `echo_pool`: read what
/// arrived, hand it to the blocking pool, write it back, read again.
async fn echo_blocking(mut stream: TcpStream, buf: usize, delay: Duration) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; buf];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let bytes = buf[..n].to_vec();
        let job = tokio::task::spawn_blocking(move || {
            std::thread::sleep(delay); // the "blocking logic"
            bytes
        });
        let Ok(bytes) = job.await else { return };
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}
