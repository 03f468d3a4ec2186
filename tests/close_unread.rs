//! A local close of a connection whose input the loop never read ends it
//! the same way on both drivers: with a reset (RST), as the kernel does
//! when a socket with unread bytes is closed; with no unread input, with
//! the end of stream (FIN).
//!
//! On epoll the unread bytes sit in the socket, so the kernel resets by
//! itself. On io_uring the multishot receive has already moved them into
//! the loop's provided buffers (the socket looks drained), so the driver
//! must ask for the reset itself.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex};

use common::*;
use ringloop::{Action, Backend, ConnHandle};

fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Epoll];
    if uring_available() {
        list.push(Backend::IoUring);
    }
    list
}

/// How the client saw the server's close after the reply.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Fin,
    Reset,
}

/// A server whose handler, at its first input, consumes what it was given,
/// pauses reading and replies `paused\n`; the test then closes the
/// connection from its own thread. The client sends `sent` in one write.
fn close_after_pause(backend: Backend, sent: &[u8]) -> End {
    let handles: Arc<Mutex<Vec<ConnHandle>>> = Arc::default();
    let seen = handles.clone();
    let hooks = Hooks::<()>::new().on_traffic(move |conn| {
        conn.read_all();
        if !conn.is_reading_paused() {
            conn.pause_reading();
            // The handle first: the client closes once it reads the reply.
            seen.lock().unwrap().push(conn.handle());
            conn.write(b"paused\n").unwrap();
        }
        Action::None
    });
    let server = Running::start(
        hooks
            .builder()
            .listen("tcp://127.0.0.1:0")
            .backend(backend)
            .loops(1),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    client.write_all(sent).unwrap();
    let mut reply = [0u8; 7];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"paused\n");
    let handle = handles.lock().unwrap().pop().expect("the handler's handle");
    handle.close().unwrap();
    let mut sink = [0u8; 4096];
    let end = match client.read(&mut sink) {
        Ok(0) => End::Fin,
        Ok(n) => panic!("{backend:?}: {n} unexpected bytes after the reply"),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => End::Reset,
        Err(e) => panic!("{backend:?}: reading the end: {e}"),
    };
    server.stop();
    end
}

#[test]
fn a_local_close_with_unread_input_resets_on_both_drivers() {
    // Far more than one receive takes (epoll reads at most 64 KiB per
    // read, io_uring's provided buffers hold 16 KiB): most of it is never
    // given to the handler, which paused after its first input.
    let sent = payload(7, 100 * 1024);
    for backend in backends() {
        assert_eq!(close_after_pause(backend, &sent), End::Reset, "{backend:?}");
    }
}

#[test]
fn a_local_close_with_every_input_read_ends_the_stream_on_both_drivers() {
    for backend in backends() {
        assert_eq!(
            close_after_pause(backend, b"hello\n"),
            End::Fin,
            "{backend:?}"
        );
    }
}
