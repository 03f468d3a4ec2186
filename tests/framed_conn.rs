//! A framed connection is a full connection, and other threads send frames
//! through its codec — over real sockets on 127.0.0.1:
//!
//! * worker-pool replies sent as frames through a `FrameHandle`;
//! * a broadcast from another thread to many framed connections on two
//!   loops, each line whole and in order;
//! * a frame the codec refuses, sent from another thread: a typed error to
//!   the sender, nothing sent, the connection and its neighbours unaffected;
//! * a line gateway written with `Framed`: `id`, `dial`, `link`,
//!   `state_of_mut`, `write_frame_to`, `on_read_closed` with the raw tail of
//!   an unterminated last line, `shutdown_write_of`, and `on_dial_error`;
//! * pausing reading from `on_frame` holds the frames already received
//!   until a worker resumes it: one job in flight per connection.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use common::*;
use ringloop::codec::{
    Codec, CodecError, FrameCloseReason, FrameConn, FrameHandle, FrameHandler, Framed,
    LengthFieldCodec, LineCodec,
};
use ringloop::{Action, ConnId, Engine, LoopContext};

fn length_field() -> LengthFieldCodec {
    LengthFieldCodec::builder()
        .length_field_length(4)
        .max_frame_length(64 * 1024)
        .build()
        .expect("codec")
}

/// Reads one 4-byte-length frame.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).expect("a frame header");
    let mut body = vec![0; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut body).expect("a frame body");
    body
}

#[test]
fn frame_handles_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<FrameHandle>();
}

// ----- worker-pool replies as frames -----

/// `[u64 id][body]` in, `[u64 id][BODY]` out, answered on the worker pool.
struct Rpc;

impl FrameHandler for Rpc {
    type State = ();

    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, request: &[u8]) -> Action {
        let frames = conn.frame_handle();
        let request = request.to_vec();
        let submitted = conn.engine().submit(move || {
            let mut reply = request;
            reply[8..].make_ascii_uppercase();
            frames
                .send_frame(&reply, |written| {
                    written.expect("the reply is written");
                })
                .expect("the codec takes the reply");
        });
        match submitted {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

#[test]
fn worker_pool_replies_are_sent_as_frames() {
    const CLIENTS: u64 = 4;
    const REQUESTS: u64 = 300;
    let codec = length_field();
    let server = Running::start(
        Engine::builder(move |_| Framed::new(codec, Rpc))
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .workers(4),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                let mut wire = Vec::new();
                let mut codec = length_field();
                for id in 0..REQUESTS {
                    let mut request = id.to_be_bytes().to_vec();
                    request.extend_from_slice(format!("client {c} request {id}").as_bytes());
                    codec.encode(&request, &mut wire).unwrap();
                }
                s.write_all(&wire).unwrap(); // all pipelined at once
                let mut seen = BTreeSet::new();
                for _ in 0..REQUESTS {
                    let reply = read_frame(&mut s);
                    let id = u64::from_be_bytes(reply[..8].try_into().unwrap());
                    assert_eq!(
                        &reply[8..],
                        format!("CLIENT {c} REQUEST {id}").as_bytes(),
                        "reply {id} of client {c}"
                    );
                    assert!(seen.insert(id), "reply {id} twice");
                }
                assert_eq!(seen.len() as u64, REQUESTS);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    server.stop();
}

// ----- a broadcast from another thread -----

/// Registers every connection's frame handle; clients only listen.
struct Room {
    members: mpsc::Sender<FrameHandle>,
}

impl FrameHandler for Room {
    type State = ();

    fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
        let _ = self.members.send(conn.frame_handle());
        Action::None
    }

    fn on_frame(&mut self, _conn: &mut FrameConn<'_, ()>, _frame: &[u8]) -> Action {
        Action::None
    }
}

#[test]
fn a_broadcast_from_another_thread_reaches_every_framed_connection_in_order() {
    const CLIENTS: usize = 24;
    const LINES: usize = 500;
    let (tx, members) = mpsc::channel();
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                LineCodec::new(),
                Room {
                    members: tx.clone(),
                },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| tcp_client(addr)).collect();
    let room: Vec<FrameHandle> = (0..CLIENTS)
        .map(|_| members.recv_timeout(PATIENCE).expect("a member"))
        .collect();
    let loops: BTreeSet<usize> = room.iter().map(|m| m.id().loop_index()).collect();
    assert_eq!(loops.len(), 2, "members on both loops");
    let broadcaster = thread::spawn(move || {
        for i in 0..LINES {
            let line = format!("line {i} to everyone");
            for member in &room {
                member
                    .send_frame(line.as_bytes(), |_| {})
                    .expect("a line frame");
            }
        }
    });
    let readers: Vec<_> = clients
        .into_iter()
        .map(|s| {
            thread::spawn(move || {
                let mut lines = BufReader::new(s).lines();
                for i in 0..LINES {
                    let line = lines.next().expect("a line").expect("read a line");
                    assert_eq!(line, format!("line {i} to everyone"));
                }
            })
        })
        .collect();
    broadcaster.join().expect("broadcaster");
    for r in readers {
        r.join().expect("reader");
    }
    server.stop();
}

// ----- a frame the codec refuses, from another thread -----

#[test]
fn a_frame_the_codec_refuses_is_a_typed_error_and_affects_nothing_else() {
    let (tx, members) = mpsc::channel();
    let codec = LineCodec::builder()
        .max_frame_length(16)
        .build()
        .expect("codec");
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                codec.clone(),
                Room {
                    members: tx.clone(),
                },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1),
    );
    let addr = server.tcp_addr(0);
    let mut first = tcp_client(addr);
    let a = members.recv_timeout(PATIENCE).unwrap();
    let second = tcp_client(addr);
    let b = members.recv_timeout(PATIENCE).unwrap();

    let (frames, errors) = thread::spawn(move || {
        let too_long = [b'x'; 16]; // 17 bytes with its '\n'
        let mut errors = Vec::new();
        let done = a.send_frame(&too_long, |_| panic!("a refused frame completes nothing"));
        errors.push(done.unwrap_err());
        errors.push(a.try_send_frame(b"two\nlines").unwrap_err());
        errors.push(a.write_frame(b"ends in \r").unwrap_err());
        a.write_frame(b"still here").unwrap().wait().unwrap();
        b.write_frame(b"me too").unwrap().wait().unwrap();
        ((a, b), errors)
    })
    .join()
    .unwrap();
    assert!(
        matches!(
            errors[0],
            CodecError::FrameTooLong {
                length: 17,
                max: 16
            }
        ),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(errors[1], CodecError::DelimiterInFrame),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], CodecError::DelimiterInFrame),
        "{:?}",
        errors[2]
    );

    // Nothing of the refused frames went out: the next line is the first.
    let mut line = String::new();
    BufReader::new(first.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "still here\n");
    line.clear();
    BufReader::new(second.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "me too\n");
    // Both connections are still open and served.
    frames.0.write_frame(b"again").unwrap().wait().unwrap();
    let mut again = [0u8; 6];
    first.read_exact(&mut again).unwrap();
    assert_eq!(&again, b"again\n");
    second.shutdown(Shutdown::Both).ok();
    server.stop();
}

// ----- a framed line gateway: the rest of `Conn` through a FrameConn -----

/// Which side a connection is, and its partner once known.
#[derive(Debug)]
enum Side {
    Client { backend: Option<ConnId> },
    Backend { client: ConnId },
}

struct Gateway {
    backend: String,
    closes: Arc<Mutex<Vec<String>>>,
}

impl FrameHandler for Gateway {
    type State = Side;

    fn on_open(&mut self, conn: &mut FrameConn<'_, Side>) -> Action {
        match conn.state() {
            None => {
                // A client: dial its backend onto this loop.
                conn.set_state(Side::Client { backend: None });
                let client = conn.id();
                let backend = self.backend.clone();
                if conn.dial(&backend, Side::Backend { client }).is_err() {
                    return Action::Close;
                }
            }
            Some(&Side::Backend { client }) => {
                let me = conn.id();
                if let Ok(Some(Side::Client { backend })) = conn.state_of_mut(client) {
                    *backend = Some(me);
                }
                let _ = conn.link(client); // a slow side pauses the other
                let _ = conn.write_frame_to(client, b"[gateway] connected");
            }
            Some(Side::Client { .. }) => {}
        }
        Action::None
    }

    fn on_frame(&mut self, conn: &mut FrameConn<'_, Side>, line: &[u8]) -> Action {
        match conn.state() {
            Some(&Side::Client {
                backend: Some(backend),
            }) => {
                let _ = conn.write_frame_to(backend, line);
            }
            Some(&Side::Backend { client }) => {
                let tagged = [&b"[b] "[..], line].concat();
                let _ = conn.write_frame_to(client, &tagged);
            }
            _ => {
                let _ = conn.write_frame(b"[gateway] not connected yet");
            }
        }
        Action::None
    }

    fn on_read_closed(&mut self, conn: &mut FrameConn<'_, Side>) -> Action {
        match conn.state() {
            Some(&Side::Client {
                backend: Some(backend),
            }) => {
                // Half-close: pass the client's FIN on, keep relaying back.
                let _ = conn.shutdown_write_of(backend);
                Action::None
            }
            Some(&Side::Backend { client }) => {
                // The backend's last line may lack its '\n': read it raw.
                let tail = conn.read_all();
                if !tail.is_empty() {
                    let tagged = [&b"[b] "[..], tail].concat();
                    let _ = conn.write_frame_to(client, &tagged);
                }
                let _ = conn.shutdown_write_of(client);
                Action::Close
            }
            _ => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut FrameConn<'_, Side>, reason: FrameCloseReason<'_>) -> Action {
        let side = match conn.state() {
            Some(Side::Client { .. }) => "client",
            Some(Side::Backend { .. }) => "backend",
            None => "unknown",
        };
        self.closes
            .lock()
            .unwrap()
            .push(format!("{side}: {reason}"));
        Action::None
    }

    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Side,
        error: &ringloop::Error,
    ) -> Action {
        if let Side::Backend { client } = state {
            let frames = FrameHandle::new(ctx.engine().handle(client), LineCodec::new());
            let _ = frames.send_frame(
                format!("[gateway] backend down: {error}").as_bytes(),
                |_| {},
            );
            let _ = frames.close();
        }
        Action::None
    }
}

fn gateway(backend: String) -> (Running, Arc<Mutex<Vec<String>>>) {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let log = closes.clone();
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                LineCodec::new(),
                Gateway {
                    backend: backend.clone(),
                    closes: log.clone(),
                },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2),
    );
    (server, closes)
}

#[test]
fn a_framed_gateway_dials_links_relays_and_half_closes() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    // The backend: echoes lines upper-cased; at the gateway's FIN, sends a
    // last line without '\n' and closes.
    let backend_thread = thread::spawn(move || {
        let (s, _) = backend.accept().unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut out = s.try_clone().unwrap();
        for line in BufReader::new(s).lines() {
            let line = line.expect("a line from the gateway");
            writeln!(out, "{}", line.to_uppercase()).unwrap();
        }
        out.write_all(b"bye, no newline").unwrap();
    });
    let (server, closes) = gateway(format!("tcp://{backend_addr}"));
    let mut client = tcp_client(server.tcp_addr(0));
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "[gateway] connected\n");
    client.write_all(b"hello\r\nworld\n").unwrap();
    for expected in ["[b] HELLO\n", "[b] WORLD\n"] {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, expected);
    }
    client.shutdown(Shutdown::Write).unwrap(); // FIN, passed on to the backend
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "[b] bye, no newline\n");
    backend_thread.join().unwrap();
    wait_until("both sides closed", || closes.lock().unwrap().len() == 2);
    let closes = closes.lock().unwrap().clone();
    assert!(
        closes.contains(&"backend: closed by peer".to_string()),
        "{closes:?}"
    );
    server.stop();
}

#[test]
fn a_failed_dial_reaches_on_dial_error_of_the_frame_handler() {
    // A port with nothing listening: bind, learn it, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (server, _) = gateway(format!("tcp://{dead}"));
    let mut client = tcp_client(server.tcp_addr(0));
    let text = String::from_utf8(read_to_end(&mut client)).unwrap();
    assert!(
        text.starts_with("[gateway] backend down: ") && text.ends_with('\n'),
        "{text:?}"
    );
    server.stop();
}

// ----- pausing holds frames already received -----

struct OneAtATime {
    in_flight: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl FrameHandler for OneAtATime {
    type State = ();

    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        conn.pause_reading(); // no further frame until this one is answered
        let frames = conn.frame_handle();
        let in_flight = self.in_flight.clone();
        let reply = frame.to_vec();
        let submitted = conn.engine().submit(move || {
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let _ = frames.send_frame(&reply, |_| {});
            let _ = frames.resume_reading(); // applied after the frame
        });
        match submitted {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

#[test]
fn pausing_in_on_frame_holds_received_frames_until_resumed() {
    const FRAMES: u64 = 200;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (a, b) = (in_flight.clone(), most.clone());
    let codec = length_field();
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                codec,
                OneAtATime {
                    in_flight: a.clone(),
                    most: b.clone(),
                },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1)
        .workers(4),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let mut wire = Vec::new();
    let mut codec = length_field();
    for i in 0..FRAMES {
        codec
            .encode(&payload(i, 1 + (i as usize * 37) % 300), &mut wire)
            .unwrap();
    }
    s.write_all(&wire).unwrap(); // every frame in one write
    for i in 0..FRAMES {
        assert_eq!(
            read_frame(&mut s),
            payload(i, 1 + (i as usize * 37) % 300),
            "frame {i}"
        );
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "one job in flight at a time"
    );
    server.stop();
}

/// Answers each line with `frame:<line>`; greets with `hi` on open.
struct LineEcho;

impl FrameHandler for LineEcho {
    type State = ();
    fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
        let _ = conn.write_frame(b"hi");
        Action::None
    }
    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        let _ = conn.write_frame(&[b"frame:", frame].concat());
        Action::None
    }
}

/// Frames live in streams: a `udp://` listener for a `Framed` handler is
/// refused at build with a typed error naming the address (its datagrams
/// would all be dropped), alone or beside a stream listener; the streams
/// alone build.
#[test]
fn a_framed_engine_refuses_a_udp_listener_at_build() {
    let build = |addrs: &[&str]| {
        let mut builder = Engine::builder(|_| Framed::new(LineCodec::new(), LineEcho));
        for addr in addrs {
            builder = builder.listen(*addr);
        }
        builder.build().map(drop)
    };
    for addrs in [
        &["udp://127.0.0.1:0"][..],
        &["tcp://127.0.0.1:0", "udp://127.0.0.1:0"][..],
    ] {
        match build(addrs) {
            Err(ringloop::Error::InvalidConfig(why)) => {
                assert!(why.contains("udp://127.0.0.1:0"), "{addrs:?}: {why}")
            }
            other => panic!("{addrs:?}: built or failed otherwise: {other:?}"),
        }
    }
    build(&["tcp://127.0.0.1:0"]).expect("streams build");
}

/// A dialled `udp://` address is a connected socket: a `Framed` handler
/// decodes each datagram it receives as frames and its answers to one
/// datagram go out as one datagram.
#[test]
fn a_framed_dialled_udp_socket_decodes_its_datagrams_as_frames() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let client =
        Running::start(Engine::builder(|_| Framed::new(LineCodec::new(), LineEcho)).loops(1));
    client
        .engine
        .dial(format!("udp://{}", peer.local_addr().unwrap()))
        .wait_timeout(PATIENCE)
        .expect("the dial finished in time")
        .expect("udp dial");
    let mut buf = [0u8; 256];
    let (n, from) = peer.recv_from(&mut buf).expect("the greeting");
    assert_eq!(&buf[..n], b"hi\n");
    peer.send_to(b"a\nb\n", from).unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("the answers");
    assert_eq!(&buf[..n], b"frame:a\nframe:b\n");
    client.stop();
}
