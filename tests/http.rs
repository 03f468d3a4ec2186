//! The HTTP/1.1 plaintext example over real sockets: pipelining, requests
//! split at every byte, bodies, `Connection: close`, the 400/431/404 family,
//! the `Date` header, and a real `curl`.

mod common;
#[path = "../examples/http_server/mod.rs"]
mod http_server;

use std::io::{BufRead, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http_server::{http_date, MAX_HEAD, MAX_UNREAD_REPLIES};

fn start(loops: usize) -> Running {
    Running::start(
        http_server::builder()
            .listen("tcp://127.0.0.1:0")
            .loops(loops),
    )
}

/// A parsed response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection reading responses with bounded waits.
type Client = SplitClient;

impl Client {
    /// Reads one response; `None` at EOF before its first byte. `head_only`
    /// for the answer to a HEAD request (no body whatever the length says).
    fn response(&mut self, head_only: bool) -> Option<Response> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).expect("read status line") == 0 {
            return None;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
        let status = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("read header");
            let h = h.trim_end_matches("\r\n");
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(": ").expect("header line");
            headers.push((n.to_string(), v.to_string()));
        }
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r.header("Content-Length").unwrap().parse().unwrap();
        if !head_only {
            r.body = vec![0; len];
            self.reader.read_exact(&mut r.body).expect("read body");
        }
        Some(r)
    }

    fn expect_eof(&mut self) {
        let rest = read_to_end(&mut self.reader);
        assert!(
            rest.is_empty(),
            "expected EOF, got {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A request of one of five kinds, and the response it must get.
fn request(kind: u64, i: usize) -> (Vec<u8>, u16, bool) {
    match kind % 5 {
        0 => (get("/plaintext"), 200, false),
        1 => (get(&format!("/missing/{i}")), 404, false),
        2 => (b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 200, true),
        3 => {
            let body = "x".repeat(i % 37);
            let req = format!(
                "POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            (req.into_bytes(), 405, false)
        }
        _ => (get(&format!("/?q={i}")), 200, false),
    }
}

fn check_ok(r: &Response, head_only: bool) {
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("13"));
    assert_eq!(r.header("Server"), Some("ringloop"));
    assert_eq!(r.header("Date").map(str::len), Some(29));
    if !head_only {
        assert_eq!(r.body, b"Hello, World!");
    }
}

#[test]
fn pipelined_batches_are_answered_in_order() {
    let server = start(2);
    let addr = server.tcp_addr(0);
    let mut client = Client::connect(addr);
    for (round, n) in [1usize, 2, 3, 16, 100, 1000].into_iter().enumerate() {
        let kinds = payload(round as u64 + 1, n);
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        for (i, &k) in kinds.iter().enumerate() {
            let (req, status, head) = request(u64::from(k), i);
            batch.extend_from_slice(&req);
            expected.push((status, head));
        }
        client.send(&batch);
        for (i, (status, head)) in expected.into_iter().enumerate() {
            let r = client.response(head).expect("a response");
            assert_eq!(r.status, status, "batch of {n}, response {i}");
            match status {
                200 => check_ok(&r, head),
                405 => assert_eq!(r.header("Allow"), Some("GET, HEAD")),
                _ => {}
            }
        }
    }
    // Several clients at once, on both loops.
    let clients: Vec<_> = (0..6)
        .map(|c| {
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                for _ in 0..20 {
                    let batch: Vec<u8> = (0..50).flat_map(|_| get("/plaintext")).collect();
                    client.send(&batch);
                    for _ in 0..50 {
                        check_ok(&client.response(false).expect("response"), false);
                    }
                }
                c
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    server.stop();
}

/// `examples/http --edge-triggered`: the same answers when every read must
/// drain what the socket holds (batches far larger than one read buffer,
/// and a request trickled in a byte at a time).
#[test]
fn edge_triggered_mode_answers_large_batches_and_trickles() {
    let server = Running::start(
        http_server::builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .edge_triggered(true),
    );
    let mut client = Client::connect(server.tcp_addr(0));
    for n in [1usize, 16, 3000] {
        let batch: Vec<u8> = (0..n)
            .flat_map(|i| get(if i % 7 == 3 { "/nope" } else { "/plaintext" }))
            .collect();
        client.send(&batch);
        for i in 0..n {
            let r = client.response(false).expect("a response");
            if i % 7 == 3 {
                assert_eq!(r.status, 404, "batch of {n}, response {i}");
            } else {
                check_ok(&r, false);
            }
        }
    }
    for &b in get("/plaintext").iter() {
        client.send(&[b]);
        std::thread::sleep(Duration::from_micros(200));
    }
    check_ok(
        &client.response(false).expect("the trickled request"),
        false,
    );
    server.stop();
}

/// The example binary takes `--edge-triggered` and serves pipelined
/// requests and a trickled one in that mode.
#[test]
fn the_example_binary_runs_edge_triggered() {
    example_serves_in_mode("--edge-triggered");
}

/// The example binary takes `--level-triggered` (epoll's other mode: the
/// default is edge-triggered) and serves pipelined requests and a trickled
/// one in that mode too.
#[test]
fn the_example_binary_runs_level_triggered() {
    example_serves_in_mode("--level-triggered");
}

/// 100 pipelined requests in one write, then one request a byte at a time,
/// to the example binary started with `mode`.
fn example_serves_in_mode(mode: &str) {
    let server = example::Example::start("http", &["tcp://127.0.0.1:0", "--loops", "1", mode]);
    let mut client = Client::connect(server.addr);
    let batch: Vec<u8> = (0..100).flat_map(|_| get("/plaintext")).collect();
    client.send(&batch);
    for _ in 0..100 {
        check_ok(&client.response(false).expect("a response"), false);
    }
    for &b in get("/plaintext").iter() {
        client.send(&[b]);
        std::thread::sleep(Duration::from_micros(200));
    }
    check_ok(
        &client.response(false).expect("the trickled request"),
        false,
    );
    assert!(server.stop().success());
}

#[test]
fn requests_split_at_every_byte() {
    let server = start(2);
    let mut client = Client::connect(server.tcp_addr(0));
    let mut pair = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    pair.extend_from_slice(&get("/nope"));
    for cut in 1..pair.len() {
        client.send(&pair[..cut]);
        // Give the server a chance to read the first part alone.
        std::thread::sleep(Duration::from_millis(1));
        client.send(&pair[cut..]);
        check_ok(&client.response(false).expect("first"), false);
        assert_eq!(
            client.response(false).expect("second").status,
            404,
            "cut {cut}"
        );
    }
    // One byte per write.
    for &b in &pair {
        client.send(&[b]);
        std::thread::sleep(Duration::from_micros(200));
    }
    check_ok(&client.response(false).unwrap(), false);
    assert_eq!(client.response(false).unwrap().status, 404);
    server.stop();
}

#[test]
fn bodies_with_content_length_are_consumed() {
    let server = start(1);
    let mut client = Client::connect(server.tcp_addr(0));
    // A body that looks like a request must not be taken for one.
    let inner = get("/nope");
    let mut req = format!(
        "GET /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        inner.len()
    )
    .into_bytes();
    req.extend_from_slice(&inner);
    req.extend_from_slice(&get("/"));
    client.send(&req);
    check_ok(&client.response(false).unwrap(), false);
    check_ok(&client.response(false).unwrap(), false);
    // A 4 MiB body, streamed: answered, discarded, and the next request works.
    let body = payload(7, 4 << 20);
    client.send(
        format!(
            "POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    let writer = client.writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        for chunk in body.chunks(100_000) {
            writer.write_all(chunk).unwrap();
        }
        writer.write_all(&get("/plaintext")).unwrap();
    });
    assert_eq!(client.response(false).unwrap().status, 405);
    check_ok(&client.response(false).unwrap(), false);
    sender.join().unwrap();
    server.stop();
}

#[test]
fn connection_close_is_honoured() {
    let server = start(1);
    let addr = server.tcp_addr(0);
    // HTTP/1.1 with Connection: close; the pipelined request after it is not answered.
    let mut client = Client::connect(addr);
    let mut req = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    req.extend_from_slice(&get("/plaintext"));
    client.send(&req);
    let r = client.response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    client.expect_eof();
    // HTTP/1.0 closes by default...
    let mut client = Client::connect(addr);
    client.send(b"GET /plaintext HTTP/1.0\r\n\r\n");
    let r = client.response(false).unwrap();
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    client.expect_eof();
    // ...unless it asks for keep-alive.
    let mut client = Client::connect(addr);
    for _ in 0..3 {
        client.send(b"GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let r = client.response(false).unwrap();
        assert_eq!(
            (r.status, r.header("Connection")),
            (200, Some("keep-alive"))
        );
    }
    // A 404 keeps the connection; so does a 405.
    client.send(b"GET /nope HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(client.response(false).unwrap().status, 404);
    server.stop();
}

#[test]
fn malformed_requests_get_400_and_close() {
    let server = start(2);
    let addr = server.tcp_addr(0);
    let cases: &[(&[u8], u16)] = &[
        (b"garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400), // no Host
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: \x00\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400),
        (b"GET /\tx HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\rHost: t\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n", 400), // TLS hello
        (b"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
    ];
    for &(req, status) in cases {
        let mut client = Client::connect(addr);
        // A good request first: the bad one must not spoil what came before.
        client.send(&get("/plaintext"));
        client.send(req);
        client.send(&get("/plaintext")); // never answered
        check_ok(&client.response(false).unwrap(), false);
        let r = client.response(false).expect("an error response");
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(req));
        assert_eq!(r.header("Connection"), Some("close"));
        client.expect_eof();
    }
    server.stop();
}

#[test]
fn oversized_heads_get_431() {
    let server = start(1);
    let addr = server.tcp_addr(0);
    let head = |value_len: usize| {
        format!(
            "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "v".repeat(value_len)
        )
        .into_bytes()
    };
    let overhead = head(0).len();
    // Exactly at the limit: served.
    let mut client = Client::connect(addr);
    client.send(&head(MAX_HEAD - overhead));
    check_ok(&client.response(false).unwrap(), false);
    // One byte over, complete or not: 431 and close.
    for req in [
        head(MAX_HEAD - overhead + 1),
        head(MAX_HEAD * 3)[..MAX_HEAD + 100].to_vec(),
    ] {
        let mut client = Client::connect(addr);
        client.send(&req);
        let r = client.response(false).expect("431");
        assert_eq!(r.status, 431);
        client.expect_eof();
    }
    server.stop();
}

#[test]
fn unknown_paths_get_404_and_keep_the_connection() {
    let server = start(1);
    let mut client = Client::connect(server.tcp_addr(0));
    for path in ["/nope", "/plaintext/", "/plaintextx", "/PLAINTEXT"] {
        client.send(&get(path));
        let r = client.response(false).unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.header("Connection"), None);
    }
    client.send(b"GET http://example.com/plaintext?a=b HTTP/1.1\r\nHost: t\r\n\r\n");
    check_ok(&client.response(false).unwrap(), false);
    server.stop();
}

#[test]
fn a_client_that_never_reads_is_dropped() {
    // The server stops reading a client whose replies pile up (the engine's
    // water marks) and drops it once they stop moving (the write timeout,
    // made small here).
    let server = Running::start(
        http_server::builder()
            .timeouts(http_server::timeouts().write(Duration::from_millis(300)))
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let addr = server.tcp_addr(0);
    let mut s = tcp_client(addr);
    // Pipeline far more replies than the cap (plus every kernel buffer on the
    // way) and read none: the server must close rather than buffer them all.
    let batch: Vec<u8> = (0..1000).flat_map(|_| get("/plaintext")).collect();
    let reply_len = 150; // a little more than a real reply
    let limit = 64 * (MAX_UNREAD_REPLIES / reply_len) / 1000 + 1;
    let mut refused = false;
    for _ in 0..limit {
        if let Err(e) = s.write_all(&batch) {
            // Closed by the server, not this client's own write timeout.
            assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "the server neither read nor closed: {e}"
            );
            refused = true;
            break;
        }
    }
    assert!(refused, "the server kept buffering replies nobody reads");
    // Everyone else is still served.
    let mut client = Client::connect(addr);
    client.send(&get("/plaintext"));
    check_ok(&client.response(false).unwrap(), false);
    server.stop();
}

#[test]
fn date_is_current_and_refreshed() {
    let server = start(2);
    let mut client = Client::connect(server.tcp_addr(0));
    let date = |client: &mut Client| {
        client.send(&get("/plaintext"));
        client
            .response(false)
            .unwrap()
            .header("Date")
            .unwrap()
            .to_string()
    };
    let first = date(&mut client);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let near: Vec<String> = (now - 3..=now + 1)
        .map(|s| String::from_utf8(http_date(s).to_vec()).unwrap())
        .collect();
    assert!(
        near.contains(&first),
        "Date {first:?} is not within a few seconds of {near:?}"
    );
    // The cached date moves on (bounded wait, no timing assertion).
    let deadline = Instant::now() + PATIENCE;
    while date(&mut client) == first {
        assert!(Instant::now() < deadline, "Date never changed from {first}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
}

#[test]
fn curl_fetches_plaintext() {
    if !have_tool("curl", "curl") {
        return;
    }
    let server = start(2);
    let base = format!("http://{}", server.tcp_addr(0));
    let (stdout, stderr) = curl_plaintext_twice(&base, &[]);
    for header in [
        "Server: ringloop\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Length: 13\r\n",
        "Date: ",
    ] {
        assert!(stdout.contains(header), "no {header:?} in {stdout}");
    }
    // Both URLs went over one kept-alive connection.
    assert!(
        stderr.contains("Re-using existing connection"),
        "curl did not reuse the connection: {stderr}"
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg(format!("{base}/missing"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");
    server.stop();
}

#[test]
fn overlong_targets_get_414() {
    let server = start(1);
    let addr = server.tcp_addr(0);
    let target = |len: usize| format!("/{}", "u".repeat(len - 1));
    // At the limit: an ordinary 404 (no such path), connection kept.
    let mut client = Client::connect(addr);
    client.send(&get(&target(http_server::MAX_URI)));
    assert_eq!(client.response(false).unwrap().status, 404);
    // Over it, as a complete head (8,000 bytes, as a scanner sends) or as a
    // request line that never ends within the head limit: 414 and close.
    for req in [
        get(&target(8000)),
        format!("GET {}", target(MAX_HEAD * 2)).into_bytes(),
    ] {
        let mut client = Client::connect(addr);
        client.send(&req);
        let r = client.response(false).expect("414");
        assert_eq!(r.status, 414);
        assert_eq!(r.header("Connection"), Some("close"));
        client.expect_eof();
    }
    server.stop();
}

#[test]
fn curl_sends_an_absolute_form_target() {
    if !have_tool("curl", "curl") {
        return;
    }
    let server = start(1);
    let base = format!("http://{}", server.tcp_addr(0));
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--request-target"])
        .arg(format!("{base}/plaintext"))
        .arg(format!("{base}/plaintext"))
        .output()
        .expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{stdout}");
    assert!(stdout.ends_with("Hello, World!"), "{stdout}");
    server.stop();
}

#[test]
fn the_example_bounds_heads_and_keep_alive_in_time() {
    let t = http_server::timeouts();
    assert!(t.incomplete.is_some_and(|d| d <= Duration::from_secs(30)));
    assert!(t.idle.is_some());
    assert!(t.write.is_some());
    // The same handler with the limits made small: a head trickled a byte
    // at a time (slowloris) is cut off, and so is a silent kept-alive
    // connection; neither gets an answer.
    let small = Duration::from_millis(300);
    let server = Running::start(
        http_server::builder()
            .timeouts(t.incomplete(small).idle(small * 2))
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let addr = server.tcp_addr(0);
    let mut slow = tcp_client(addr);
    let mut trickler = slow.try_clone().unwrap();
    let head = get("/plaintext");
    let trickle = std::thread::spawn(move || {
        // Every byte but the blank line, one each 50 ms, then header bytes
        // that never end the head.
        let bytes = head[..head.len() - 2]
            .iter()
            .copied()
            .chain(std::iter::repeat(b'x'));
        for byte in bytes.take(20 * PATIENCE.as_secs() as usize) {
            if trickler.write_all(&[byte]).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer); // EOF or reset, bounded by PATIENCE
    assert!(
        answer.is_empty(),
        "an answer to an unfinished head: {answer:?}"
    );
    let cut_off = trickle.join().unwrap();
    assert!(cut_off, "the trickled head was never cut off");
    let mut quiet = Client::connect(addr);
    quiet.send(&get("/plaintext"));
    check_ok(&quiet.response(false).unwrap(), false);
    quiet.expect_eof(); // the keep-alive timeout closes it
    server.stop();
}
