//! Opening many client connections without overrunning the server's accept
//! backlog, and proving each one is served before it is used.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::Result;

/// Handshakes in flight at once: well under the usual listen backlog (128 to
/// 4096), so no SYN is dropped and no connection waits a 1 s retransmit.
const IN_FLIGHT: usize = 128;

/// The byte each new connection sends and expects back.
const PROBE: u8 = b'!';

struct Pending {
    stream: TcpStream,
    connected: bool,
    sent: bool,
}

/// Opens `n` connections to `addr` with `TCP_NODELAY`, each confirmed by a
/// one-byte echo (so the server has accepted it and an event loop serves it),
/// and returns them unregistered. Fails if any connection fails or if not all
/// are confirmed within `timeout`.
pub fn open_confirmed(addr: SocketAddr, n: usize, timeout: Duration) -> Result<Vec<TcpStream>> {
    let deadline = Instant::now() + timeout;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(IN_FLIGHT);
    let mut slots: Vec<Option<Pending>> = (0..IN_FLIGHT.min(n)).map(|_| None).collect();
    let mut opened = 0;
    let mut done = Vec::with_capacity(n);

    let open = |slot: usize, poll: &Poll| -> Result<Pending> {
        let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Pending {
            stream,
            connected: false,
            sent: false,
        })
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = Some(open(i, &poll)?);
        opened += 1;
    }

    while done.len() < n {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "only {} of {n} connections to {addr} were accepted and echoed a byte within {timeout:?}",
                done.len()
            )
            .into());
        }
        match poll.poll(
            &mut events,
            Some((deadline - now).min(Duration::from_millis(100))),
        ) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => r?,
        }
        for event in events.iter() {
            let slot = event.token().0;
            let Some(p) = slots[slot].as_mut() else {
                continue;
            };
            let ready = advance(p)
                .map_err(|e| format!("connection {} of {n} to {addr}: {e}", done.len() + 1))?;
            if !ready {
                continue;
            }
            let mut p = slots[slot].take().expect("slot checked above");
            poll.registry().deregister(&mut p.stream)?;
            done.push(p.stream);
            if opened < n {
                slots[slot] = Some(open(slot, &poll)?);
                opened += 1;
            }
        }
    }
    Ok(done)
}

/// Moves one connection on as far as it goes; true once the probe came back.
fn advance(p: &mut Pending) -> Result<bool> {
    if !p.connected {
        if let Some(e) = p.stream.take_error()? {
            return Err(format!("connect failed: {e}").into());
        }
        match p.stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(false),
            Err(e) => return Err(format!("connect failed: {e}").into()),
        }
        p.connected = true;
        p.stream.set_nodelay(true)?;
    }
    if !p.sent {
        match p.stream.write(&[PROBE]) {
            Ok(1) => p.sent = true,
            Ok(_) => return Err("write of the probe byte returned 0".into()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(format!("sending the probe byte: {e}").into()),
        }
    }
    let mut byte = [0u8];
    match p.stream.read(&mut byte) {
        Ok(1) if byte[0] == PROBE => Ok(true),
        Ok(1) => Err(format!(
            "server echoed 0x{:02x} for the probe byte 0x{PROBE:02x}",
            byte[0]
        )
        .into()),
        Ok(_) => Err("server closed the connection before echoing the probe byte".into()),
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(format!("waiting for the probe echo: {e}").into()),
    }
}
