//! The tokio peer for the HTTP benchmark: a plaintext server written the way
//! a tokio user would (a task per connection, requests parsed with
//! `httparse`; a current_thread runtime for `--threads 1`, the fair peer of
//! a one-loop server, which would otherwise pay for a multi-thread
//! scheduler's work stealing and wake-ups between the driver thread and one
//! worker; a multi-thread runtime with that many workers otherwise). Every complete request of a read is answered into
//! one buffer written with one `write_all`, so it pipelines as well as the
//! ringloop server. As there, the whole `200 OK` reply is prebuilt and
//! re-rendered only when the second in its `Date` changes (per thread,
//! checked once per read), so replies cost the same on both sides and the
//! comparison is about the I/O runtimes. It serves `GET /plaintext` (and
//! `/`) and answers anything else `404`; request bodies are not supported
//! (wrk sends none).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::Result;

/// Largest buffered request head before the connection is dropped.
const MAX_BUFFER: usize = 64 * 1024;

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr, threads: usize) -> Result<()> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(addr, threads))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(addr: SocketAddr, threads: usize) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::bind(addr).await?;
    let runtime = if threads <= 1 {
        "current_thread runtime".to_string()
    } else {
        format!("multi-thread runtime, {threads} worker threads")
    };
    println!(
        "tokio http listening on tcp://{} ({runtime})",
        listener.local_addr()?
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream));
                }
                Err(e) => {
                    eprintln!("tokio http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!("tokio http: signal received, stopping");
    Ok(())
}

/// This thread's prebuilt replies and the second they were built for.
struct Replies {
    second: u64,
    ok: Vec<u8>,
    not_found: Vec<u8>,
}

thread_local! {
    static REPLIES: RefCell<Replies> = const {
        RefCell::new(Replies { second: u64::MAX, ok: Vec::new(), not_found: Vec::new() })
    };
}

fn reply(status: &str, date: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nServer: tokio\r\nDate: {date}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Appends the responses to every complete request in `buf` to `out`;
/// returns the bytes consumed, or `None` for a malformed request.
fn respond_all(buf: &[u8], out: &mut Vec<u8>) -> Option<usize> {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    REPLIES.with(|replies| {
        let mut replies = replies.borrow_mut();
        if replies.second != secs {
            let date = httpdate::fmt_http_date(now);
            *replies = Replies {
                second: secs,
                ok: reply("200 OK", &date, "Hello, World!"),
                not_found: reply("404 Not Found", &date, "Not Found"),
            };
        }
        let mut start = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..]) {
                Ok(httparse::Status::Complete(len)) => {
                    out.extend_from_slice(match req.path {
                        Some("/plaintext" | "/") => &replies.ok,
                        _ => &replies.not_found,
                    });
                    start += len;
                }
                Ok(httparse::Status::Partial) => return Some(start),
                Err(_) => return None,
            }
        }
    })
}

async fn connection(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    let mut out = Vec::with_capacity(4096);
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_BUFFER {
                return;
            }
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let Some(used) = respond_all(&buf[..filled], &mut out) else {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        buf.copy_within(used..filled, 0);
        filled -= used;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_pipelined_requests() {
        let two =
            b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /pl";
        let mut out = Vec::new();
        let used = respond_all(two, &mut out).unwrap();
        assert_eq!(used, two.len() - 7);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1);
        assert_eq!(text.matches("HTTP/1.1 404 Not Found").count(), 1);
        assert!(text.contains("Hello, World!"));
        assert!(respond_all(b"NOT HTTP\r\n\r\n", &mut Vec::new()).is_none());
    }
}
