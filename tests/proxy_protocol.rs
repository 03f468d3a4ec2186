//! PROXY protocol listeners over real sockets, with hand-made headers: v1,
//! v2 over IPv4, IPv6 and Unix addresses, LOCAL, TLVs, bytes sent with the
//! header, a header dribbled one byte at a time; and the bad ones (no header,
//! a bad signature, truncated, too long, too slow), each closed before
//! `on_open` with its reason while other connections carry on.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringloop::proxy_protocol::{tlv, V2_SIGNATURE};
use ringloop::{
    Action, CloseReason, Conn, Engine, EngineBuilder, EventHandler, LoopContext, SockAddr,
};

/// Greets each connection with what it knows of its peer, then echoes;
/// records refusals.
#[derive(Clone, Default)]
struct Greeter {
    rejected: Arc<Mutex<Vec<String>>>,
    closed: Arc<Mutex<usize>>,
}

impl EventHandler for Greeter {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let line = match conn.proxy_header() {
            Some((header, balancer)) => format!(
                "peer={} balancer={balancer} v={} authority={}\n",
                conn.peer_addr(),
                header.version,
                String::from_utf8_lossy(header.tlv(tlv::AUTHORITY).unwrap_or(b"-")),
            ),
            None => format!("peer={} direct\n", conn.peer_addr()),
        };
        let _ = conn.write(line.as_bytes());
        Action::None
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        echo_now(conn)
    }
    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, _reason: &CloseReason) -> Action {
        *self.closed.lock().unwrap() += 1;
        Action::None
    }
    fn on_reject(&mut self, _ctx: &mut LoopContext, _peer: &SockAddr, reason: &CloseReason) {
        self.rejected.lock().unwrap().push(reason.to_string());
    }
}

fn builder(g: &Greeter) -> EngineBuilder<Greeter> {
    let g = g.clone();
    Engine::builder(move |_| g.clone()).loops(2)
}

/// Reads the greeting line.
fn greeting<S: Read>(s: &mut S) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while s.read(&mut byte).expect("greeting") == 1 {
        if byte[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(byte[0]);
    }
    panic!(
        "closed before the greeting: {:?}",
        String::from_utf8_lossy(&line)
    );
}

fn expect_echo<S: Read + Write>(s: &mut S, data: &[u8]) {
    let mut got = vec![0; data.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.extend_from_slice(&[ver_cmd, fam]);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn local_port(s: &TcpStream) -> u16 {
    s.local_addr().unwrap().port()
}

#[test]
fn v1_header_then_data_in_one_write() {
    for (reuseport, edge) in [(false, false), (true, false), (false, true)] {
        let g = Greeter::default();
        let b = builder(&g)
            .listen_proxied("tcp://127.0.0.1:0")
            .reuse_port(reuseport);
        let server = Running::start(if edge {
            edge_triggered_on_epoll(b, None)
        } else {
            // Asked for: epoll's default is edge-triggered.
            b.edge_triggered(false)
        });
        let mut s = tcp_client(server.tcp_addr(0));
        s.write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 4242 80\r\nping")
            .unwrap();
        let line = greeting(&mut s);
        assert_eq!(
            line,
            format!(
                "peer=203.0.113.7:4242 balancer=127.0.0.1:{} v=1 authority=-",
                local_port(&s)
            )
        );
        expect_echo(&mut s, b"ping"); // the bytes after the header
        server.stop();
        assert!(g.rejected.lock().unwrap().is_empty());
    }
}

#[test]
fn v2_ipv6_dribbled_one_byte_at_a_time_with_tlvs() {
    let g = Greeter::default();
    let server = Running::start(builder(&g).listen_proxied("tcp://127.0.0.1:0"));
    let mut s = tcp_client(server.tcp_addr(0));
    s.set_nodelay(true).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&"2001:db8::42".parse::<Ipv6Addr>().unwrap().octets());
    body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&[0x1f, 0x90, 0x01, 0xbb]); // 8080 -> 443
    body.extend_from_slice(&[tlv::AUTHORITY, 0, 11]);
    body.extend_from_slice(b"example.org");
    body.extend_from_slice(&[tlv::NOOP, 0, 3, 0, 0, 0]);
    let mut bytes = v2(0x21, 0x21, &body);
    bytes.extend_from_slice(b"after");
    for b in &bytes {
        s.write_all(std::slice::from_ref(b)).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let line = greeting(&mut s);
    assert_eq!(
        line,
        format!(
            "peer=[2001:db8::42]:8080 balancer=127.0.0.1:{} v=2 authority=example.org",
            local_port(&s)
        )
    );
    expect_echo(&mut s, b"after");
    server.stop();
}

#[test]
fn v2_local_keeps_the_socket_peer() {
    let g = Greeter::default();
    let server = Running::start(builder(&g).listen_proxied("tcp://127.0.0.1:0"));
    let mut s = tcp_client(server.tcp_addr(0));
    // A health check: LOCAL, whatever address block follows is ignored.
    s.write_all(&v2(0x20, 0x11, &[9; 12])).unwrap();
    let me = format!("127.0.0.1:{}", local_port(&s));
    assert_eq!(
        greeting(&mut s),
        format!("peer={me} balancer={me} v=2 authority=-")
    );
    s.write_all(b"hi").unwrap();
    expect_echo(&mut s, b"hi");
    server.stop();
}

#[test]
fn v2_unix_addresses_on_a_unix_listener() {
    let dir = TempDir::new("proxy-unix");
    let path = dir.join("s.sock");
    let g = Greeter::default();
    let server = Running::start(builder(&g).listen_proxied(format!("unix://{}", path.display())));
    let mut s = UnixStream::connect(&path).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut body = vec![0u8; 216];
    body[..12].copy_from_slice(b"/run/client1");
    body[108..116].copy_from_slice(b"/run/app");
    let mut bytes = v2(0x21, 0x31, &body);
    bytes.extend_from_slice(b"x");
    s.write_all(&bytes).unwrap();
    assert_eq!(
        greeting(&mut s),
        "peer=/run/client1 balancer=(unnamed) v=2 authority=-"
    );
    expect_echo(&mut s, b"x");
    server.stop();
}

#[test]
fn plain_listeners_beside_proxied_ones_are_untouched() {
    let g = Greeter::default();
    let server = Running::start(
        builder(&g)
            .listen("tcp://127.0.0.1:0")
            .listen_proxied("tcp://127.0.0.1:0"),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    assert_eq!(
        greeting(&mut s),
        format!("peer=127.0.0.1:{} direct", local_port(&s))
    );
    server.stop();
}

/// Sends `bytes`, optionally half-closes, and expects the server to close
/// without a greeting.
fn refused(addr: SocketAddr, bytes: &[u8], then_close: bool) {
    let mut s = tcp_client(addr);
    let _ = s.write_all(bytes);
    if then_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let got = read_to_end(&mut s);
    assert!(
        got.is_empty(),
        "no greeting for a refused connection: {got:?}"
    );
}

#[test]
fn bad_headers_close_only_their_connection_with_a_reason() {
    bad_headers(false);
}

/// The same edge-triggered: a header cut short and the peer's end often
/// come in one event, and no new edge reports the end.
#[test]
fn bad_headers_close_only_their_connection_with_a_reason_edge_triggered() {
    bad_headers(true);
}

fn bad_headers(edge_triggered: bool) {
    let g = Greeter::default();
    let server = Running::start(
        builder(&g)
            .listen_proxied("tcp://127.0.0.1:0")
            .proxy_header_timeout(Duration::from_secs(1))
            // (Edge-triggered mode makes `Auto` choose epoll.)
            .edge_triggered(edge_triggered),
    );
    let addr = server.tcp_addr(0);
    // A good connection stays open through it all.
    let mut good = tcp_client(addr);
    good.write_all(b"PROXY TCP4 10.1.1.1 10.2.2.2 1 2\r\n")
        .unwrap();
    assert!(greeting(&mut good).starts_with("peer=10.1.1.1:1 "));

    let mut bad_signature = V2_SIGNATURE.to_vec();
    bad_signature[5] = b'X';
    let cases: Vec<(Vec<u8>, bool, &str)> = vec![
        (
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            false,
            "no PROXY protocol header",
        ),
        (bad_signature, false, "no PROXY protocol header"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(),
            false,
            "malformed",
        ),
        (
            [b"PROXY UNKNOWN ".as_slice(), &[b'a'; 150]].concat(),
            false,
            "longer than 107",
        ),
        (
            v2(0x21, 0x11, &[0; 12])[..20].to_vec(),
            true,
            "closed the connection after 20 bytes",
        ),
        (b"PROXY TCP4 1.2".to_vec(), false, "within the timeout"),
        (Vec::new(), false, "within the timeout"),
    ];
    for (bytes, close, _) in &cases {
        refused(addr, bytes, *close);
    }
    wait_until("every refusal reported", || {
        g.rejected.lock().unwrap().len() == cases.len()
    });
    let mut reasons = g.rejected.lock().unwrap().clone();
    for (_, _, want) in &cases {
        let i = reasons
            .iter()
            .position(|r| r.contains(want))
            .unwrap_or_else(|| panic!("no refusal saying {want:?} in {reasons:?}"));
        reasons.remove(i);
    }
    assert_eq!(
        server.engine.admission_stats().refused_proxy_header,
        cases.len() as u64
    );
    // None of them opened, so none closed; the good one still works.
    assert_eq!(*g.closed.lock().unwrap(), 0);
    good.write_all(b"still").unwrap();
    expect_echo(&mut good, b"still");
    assert_eq!(server.engine.connection_count(), 1);
    drop(good);
    wait_until("the good one closed", || {
        server.engine.connection_count() == 0
    });
    server.stop();
}

#[test]
fn a_connection_waiting_for_its_header_is_dropped_quietly_at_stop() {
    let g = Greeter::default();
    let server = Running::start(builder(&g).listen_proxied("tcp://127.0.0.1:0"));
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"PROXY TCP4").unwrap();
    wait_until("accepted", || server.engine.connection_count() == 1);
    server.stop();
    assert!(read_to_end(&mut s).is_empty());
    assert_eq!(*g.closed.lock().unwrap(), 0, "never opened, never closed");
    assert_eq!(*g.rejected.lock().unwrap(), ["engine shutdown"]);
}

#[test]
fn a_udp_listener_cannot_be_proxied() {
    let g = Greeter::default();
    let err = builder(&g)
        .listen_proxied("udp://127.0.0.1:0")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("stream listener"), "{err}");
}
