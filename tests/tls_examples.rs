//! The examples over TLS, as processes: `echo` and `http` serving `tls://`
//! with `--tls-cert`/`--tls-key` (driven by the rustls client and `curl
//! --cacert`), and `proxy` terminating TLS in front of a plain backend and
//! originating TLS to a TLS backend (`--backend-ca`). Needs the examples
//! built (`cargo test` builds them; with a `--test` filter, run `cargo build
//! --examples` first).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::thread;

use common::certs::{tls_client, tls_round_trip, TestPki};
use common::deploy_example::Example;
use common::*;

/// `ADDR --loops N --tls-cert CERT --tls-key KEY` for a TLS server example.
fn tls_args<'a>(addr: &'a str, loops: &'a str, cert: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![addr, "--loops", loops, "--tls-cert", cert, "--tls-key", key]
}

fn write_pem(dir: &TempDir, pki: &TestPki) -> [String; 3] {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    std::fs::write(path("cert.pem"), &pki.server.cert_pem).unwrap();
    std::fs::write(path("key.pem"), &pki.server.key_pem).unwrap();
    std::fs::write(path("ca.pem"), pki.ca.pem()).unwrap();
    [path("cert.pem"), path("key.pem"), path("ca.pem")]
}

#[test]
fn echo_example_serves_tls_and_tcp_side_by_side() {
    let pki = TestPki::new();
    let dir = TempDir::new("tls-echo");
    let [cert, key, _] = write_pem(&dir, &pki);
    let echo = Example::start(
        "echo",
        &[
            "tls://127.0.0.1:0",
            "tcp://127.0.0.1:0",
            "--loops",
            "2",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        2,
    );
    assert!(echo.addrs[0].starts_with("tls://"), "{:?}", echo.addrs);
    let mut tls = tls_client(pki.client_config(), echo.sock_addr(0), "localhost");
    tls_round_trip(&mut tls, &payload(1, 3 << 20));
    let mut plain = tcp_client(echo.sock_addr(1));
    echo_round_trip(&mut plain, b"plain as ever");
    drop((tls, plain));
    echo.stop();
}

#[test]
fn http_example_serves_https_to_curl() {
    if !have_tool("curl", "curl") {
        return;
    }
    let pki = TestPki::new();
    let dir = TempDir::new("tls-http");
    let [cert, key, ca] = write_pem(&dir, &pki);
    let http = Example::start("http", &tls_args("tls://127.0.0.1:0", "1", &cert, &key), 1);
    let port = http.sock_addr(0).port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", &ca, "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("https://localhost:{port}/plaintext"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"Hello, World!");
    http.stop();
}

/// A plain echo backend on a std listener (one thread per connection).
fn plain_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

#[test]
fn proxy_terminates_tls() {
    let pki = TestPki::new();
    let dir = TempDir::new("tls-proxy-in");
    let [cert, key, _] = write_pem(&dir, &pki);
    let backend = format!("tcp://{}", plain_backend());
    let proxy = Example::start(
        "proxy",
        &[
            "--listen",
            "tls://127.0.0.1:0",
            "--backend",
            &backend,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        1,
    );
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let (config, addr) = (pki.client_config(), proxy.sock_addr(0));
            thread::spawn(move || {
                let mut s = tls_client(config, addr, "localhost");
                for len in [1, 70_000, 1 << 20] {
                    tls_round_trip(&mut s, &payload(c * 7 + len as u64, len));
                }
                // Half-close through the proxy: close_notify + FIN in, the
                // backend's FIN back out as close_notify.
                s.conn.send_close_notify();
                s.flush().unwrap();
                s.sock.shutdown(std::net::Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).expect("a clean close");
                assert!(rest.is_empty());
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    proxy.stop();
}

#[test]
fn proxy_originates_tls() {
    let pki = TestPki::new();
    let dir = TempDir::new("tls-proxy-out");
    let [cert, key, ca] = write_pem(&dir, &pki);
    // The TLS backend: the echo example itself.
    let backend = Example::start("echo", &tls_args("tls://127.0.0.1:0", "1", &cert, &key), 1);
    let proxy = Example::start(
        "proxy",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--backend",
            &backend.addrs[0],
            "--backend-ca",
            &ca,
        ],
        1,
    );
    let mut s = tcp_client(proxy.sock_addr(0));
    for len in [5, 100_000, 2 << 20] {
        echo_round_trip(&mut s, &payload(len as u64, len));
    }
    drop(s);
    // A CA the backend is not signed by: the proxy refuses the backend and
    // closes the client, and says why.
    let other = TestPki::new();
    let other_ca = dir.join("other-ca.pem");
    std::fs::write(&other_ca, other.ca.pem()).unwrap();
    let strict = Example::start(
        "proxy",
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--backend",
            &backend.addrs[0],
            "--backend-ca",
            &other_ca.to_string_lossy(),
        ],
        1,
    );
    let mut s = tcp_client(strict.sock_addr(0));
    let _ = s.write_all(b"hello?");
    assert!(
        read_to_end(&mut s).is_empty(),
        "relayed to an untrusted backend"
    );
    strict.stop();
    proxy.stop();
    backend.stop();
    assert!(Path::new(&ca).exists());
}
