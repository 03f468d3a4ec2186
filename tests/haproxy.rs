//! HAProxy in front of the examples, over loopback: `send-proxy` (v1) and
//! `send-proxy-v2` to `echo --proxy-protocol` (every byte back through the
//! balancer) and to `kv --proxy-protocol` (`CLIENT LIST` shows the real
//! client, not the balancer), health checks included (`check-send-proxy`:
//! LOCAL headers); and HAProxy with health checks balancing two `echo`
//! processes under continuous load while one is upgraded (no error) and the
//! other stopped (once its check fails, no new connection fails). Skipped, saying why, without `haproxy` (Debian package
//! `haproxy`; `.ci/run` installs it).

mod common;
use common::deploy_example as example;
#[path = "common/load.rs"]
mod load;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::*;
use example::{free_port, Example, Haproxy};
use load::Load;
use std::time::{Duration, Instant};

/// A TCP-mode HAProxy config: frontend `port` to `backend` with `options`
/// on the server line.
fn config(port: u16, backend: std::net::SocketAddr, options: &str) -> String {
    format!(
        "global\n  maxconn 2000\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  server s1 {backend} {options} check inter 200ms check-send-proxy\n"
    )
}

const VERSIONS: [&str; 2] = ["send-proxy", "send-proxy-v2"];

/// Starts example `name` with `--proxy-protocol` and HAProxy in front of
/// it sending `version`; returns both and HAProxy's port.
fn behind_haproxy(name: &str, version: &str) -> (Example, Haproxy, u16) {
    let args: Vec<String> = ["tcp://127.0.0.1:0", "--proxy-protocol", "--loops", "2"]
        .map(String::from)
        .to_vec();
    let server = Example::start(name, &args, 1);
    let port = free_port();
    let haproxy = Haproxy::start(&config(port, server.tcp_addr(0), version), &[port]);
    (server, haproxy, port)
}

/// The health checks (which send the PROXY header too) never marked the
/// server down.
fn assert_checks_passed(haproxy: &Haproxy, version: &str) {
    let down: Vec<_> = haproxy
        .output()
        .into_iter()
        .filter(|l| l.contains("is DOWN"))
        .collect();
    assert!(down.is_empty(), "{version}: {down:?}");
}

#[test]
fn echo_behind_haproxy_gets_every_byte_back() {
    if !have_tool("haproxy", "haproxy") {
        return;
    }
    for version in VERSIONS {
        let (echo, haproxy, port) = behind_haproxy("echo", version);
        let clients: Vec<_> = (0..8u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = tcp_client(([127, 0, 0, 1], port).into());
                    let data = payload(i, 200_000);
                    let writer = {
                        let mut w = s.try_clone().unwrap();
                        let data = data.clone();
                        std::thread::spawn(move || w.write_all(&data).unwrap())
                    };
                    let mut got = vec![0; data.len()];
                    s.read_exact(&mut got).unwrap();
                    writer.join().unwrap();
                    assert!(got == data, "bytes differ through HAProxy");
                })
            })
            .collect();
        for c in clients {
            c.join().expect("a client through HAProxy");
        }
        assert_checks_passed(&haproxy, version);
        drop(haproxy);
        echo.stop();
    }
}

/// Sends a RESP command, returns the reply's first line and, for a bulk
/// string, its body.
fn call(r: &mut BufReader<TcpStream>, w: &mut TcpStream, args: &[&str]) -> (String, String) {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    w.write_all(req.as_bytes()).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let line = line.trim_end().to_string();
    let mut body = String::new();
    if let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf).unwrap();
        body = String::from_utf8_lossy(&buf[..len]).into_owned();
    }
    (line, body)
}

#[test]
fn kv_behind_haproxy_sees_the_real_client() {
    if !have_tool("haproxy", "haproxy") {
        return;
    }
    for version in VERSIONS {
        let (kv, haproxy, port) = behind_haproxy("kv", version);
        let mut w = tcp_client(([127, 0, 0, 1], port).into());
        let mut r = BufReader::new(w.try_clone().unwrap());
        assert_eq!(call(&mut r, &mut w, &["SET", "k", "v"]).0, "+OK");
        let (_, list) = call(&mut r, &mut w, &["CLIENT", "LIST"]);
        let me = list
            .lines()
            .find(|l| l.contains("cmd=client"))
            .unwrap_or_else(|| panic!("{version}: no CLIENT LIST row for me in {list:?}"));
        // addr= is this client's own socket (behind the balancer), laddr=
        // the kv server's.
        let mine = w.local_addr().unwrap();
        assert!(me.contains(&format!(" addr={mine} ")), "{version}: {me}");
        assert!(
            me.contains(&format!(" laddr={} ", kv.tcp_addr(0))),
            "{version}: {me}"
        );
        drop((r, w));
        assert_checks_passed(&haproxy, version);
        drop(haproxy);
        kv.stop();
    }
}

#[test]
fn haproxy_balances_two_echoes_through_an_upgrade_and_a_stop() {
    if !have_tool("haproxy", "haproxy") {
        return;
    }
    let dir = TempDir::new("haproxy-balance");
    let control = dir.join("a.sock");
    let control = control.display().to_string();
    let args = |addr: &str, upgrade: bool| {
        let mut v: Vec<String> = vec![
            addr.into(),
            "--proxy-protocol".into(),
            "--loops".into(),
            "2".into(),
        ];
        if upgrade {
            v.extend(["--upgrade".to_string(), control.clone()]);
        }
        v
    };
    let mut a = Example::start("echo", &args("tcp://127.0.0.1:0", true), 1);
    let b = Example::start("echo", &args("tcp://127.0.0.1:0", false), 1);
    let a_addr = a.tcp_addr(0);
    let port = free_port();
    let config = format!(
        "global\n  maxconn 2000\n  log stderr format raw local0\n\
         defaults\n  log global\n  option tcplog\n  mode tcp\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n\
         \x20 retries 3\n  option redispatch\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\
         backend be\n  balance roundrobin\n\
         \x20 default-server send-proxy-v2 check check-send-proxy inter 100ms fall 1 rise 1\n\
         \x20 server a {a_addr}\n  server b {}\n",
        b.tcp_addr(0)
    );
    let haproxy = Haproxy::start(&config, &[port]);
    let load_start = Instant::now();
    let (load, clients) = Load::start(([127, 0, 0, 1], port).into(), 6);
    std::thread::sleep(Duration::from_millis(800));
    // Upgrade a: the new process takes its socket, the old one drains.
    let upgrade_start = Instant::now();
    let a2 = Example::start("echo", &args(&format!("tcp://{a_addr}"), true), 1);
    assert!(a
        .wait_exit(PATIENCE)
        .expect("the old a drains and exits")
        .success());
    std::thread::sleep(Duration::from_millis(800));
    // Stop b: HAProxy's check fails and it stops sending there. Connections
    // in flight on b are cut (a plain stop); none started after HAProxy
    // marked it down may fail.
    let b_stopped_at = Instant::now();
    b.stop();
    wait_until("HAProxy to mark b down", || {
        haproxy.output().iter().any(|l| l.contains("be/b is DOWN"))
    });
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let errors = load.finish(clients);
    let before_stop: Vec<_> = errors.iter().filter(|f| f.failed < b_stopped_at).collect();
    assert!(
        before_stop.is_empty(),
        "failed before b was stopped (a's upgrade at {:?}): {before_stop:?}",
        upgrade_start - load_start
    );
    let after_down: Vec<_> = errors.iter().filter(|f| f.started >= down_at).collect();
    assert!(
        after_down.is_empty(),
        "new connections failed after b was down: {after_down:?}"
    );
    let done = load.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(done >= 12, "only {done} connections completed");
    eprintln!(
        "{done} connections through HAProxy; {} cut when b stopped (in flight on b), 0 after it was marked down",
        errors.len()
    );
    assert_checks_passed_for(&haproxy, "be/a");
    drop(haproxy);
    a2.stop();
}

/// Server `name`'s health checks never failed.
fn assert_checks_passed_for(haproxy: &Haproxy, name: &str) {
    let down: Vec<_> = haproxy
        .output()
        .into_iter()
        .filter(|l| l.contains(&format!("{name} is DOWN")))
        .collect();
    assert!(down.is_empty(), "{down:?}");
}
