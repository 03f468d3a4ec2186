//! [`drive`]: one run of rustls's unbuffered state machine over ciphertext
//! the loop owns.
//!
//! Owns the mapping from rustls's `ConnectionState`s to what the loop does:
//! records are decrypted in place in the caller's buffer and their plaintext
//! copied once, into the caller's destination; handshake records and alerts
//! are encoded into the session's outgoing buffer and handed to a
//! [`SocketSink`] when one is given; application data is encrypted into one
//! scratch buffer per thread and handed to the sink at once. It never keeps
//! bytes itself and never reads a socket: the caller owns the input (and
//! keeps what was not consumed), the outgoing buffers and the destination.

use std::cell::Cell;
use std::io;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, ReadEarlyData, UnbufferedStatus,
    WriteTraffic,
};
use rustls::CommonState;

use super::sink::SocketSink;

/// Plaintext handed to one `encrypt` call (four full records).
const SEAL_STEP: usize = 4 * 16 * 1024;
/// The scratch buffer's usual size: a step's records with their overhead.
const SEAL_ROOM: usize = SEAL_STEP + 1024;

thread_local! {
    /// Where application data is encrypted before it goes to the socket:
    /// one per loop thread, never per connection.
    static SEAL: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// A client or server unbuffered connection, as [`drive`] uses it.
pub(super) trait Records {
    type Data;

    fn common(&self) -> &CommonState;

    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// Takes early (0-RTT) data as plaintext; only servers get any.
    fn read_early(
        early: &mut ReadEarlyData<'_, '_, Self::Data>,
        plain: &mut Plain<'_>,
    ) -> Result<(), rustls::Error>;
}

impl Records for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn common(&self) -> &CommonState {
        self
    }

    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn read_early(
        early: &mut ReadEarlyData<'_, '_, Self::Data>,
        plain: &mut Plain<'_>,
    ) -> Result<(), rustls::Error> {
        while let Some(record) = early.next_record() {
            plain.put(record?.payload);
        }
        Ok(())
    }
}

impl Records for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn common(&self) -> &CommonState {
        self
    }

    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn read_early(
        _: &mut ReadEarlyData<'_, '_, Self::Data>,
        _: &mut Plain<'_>,
    ) -> Result<(), rustls::Error> {
        Err(rustls::Error::General(
            "early data offered to a client".into(),
        ))
    }
}

/// Where decrypted plaintext goes: `out` first, what does not fit (and
/// everything once something did not) into `rest`.
pub(super) struct Plain<'a> {
    pub(super) out: &'a mut [u8],
    pub(super) len: usize,
    pub(super) rest: &'a mut Vec<u8>,
}

impl Plain<'_> {
    pub(super) fn put(&mut self, data: &[u8]) {
        let n = if self.rest.is_empty() {
            data.len().min(self.out.len() - self.len)
        } else {
            0
        };
        self.out[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        if n < data.len() {
            self.rest.extend_from_slice(&data[n..]);
        }
    }

    pub(super) fn full(&self) -> bool {
        self.len == self.out.len() || !self.rest.is_empty()
    }
}

/// Where outgoing bytes go.
pub(super) struct Tx<'s, 'a> {
    /// Encoded handshake records and alerts not yet handed to the sink.
    pub(super) handshake: &'s mut Vec<u8>,
    /// Plaintext written before the handshake completed, sealed first once
    /// application data may flow.
    pub(super) early: &'s mut Vec<u8>,
    /// The socket's sink; without one, records wait in `handshake`.
    pub(super) sink: Option<&'s mut SocketSink<'a>>,
}

impl Tx<'_, '_> {
    /// Hands the encoded handshake records to the sink (if there is one).
    pub(super) fn flush_handshake(&mut self) -> io::Result<()> {
        if let Some(sink) = self.sink.as_deref_mut() {
            if !self.handshake.is_empty() {
                sink.put(self.handshake)?;
                *self.handshake = Vec::new();
            }
        }
        Ok(())
    }
}

/// What a run does once application data may be written.
pub(super) enum Job<'d> {
    /// Decrypts input; stops when the destination is full.
    Read,
    /// Sends what the session owes the peer (and the early plaintext).
    Send,
    /// Encrypts these buffers, in order, and sends them.
    Seal(&'d [&'d [u8]]),
    /// Sends `close_notify`.
    CloseNotify,
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// Application data may flow and the job ran; the input left (if any)
    /// is an incomplete record.
    Idle,
    /// The handshake needs more input; the job (if a write) did not run.
    Handshaking,
    /// The destination is full (a [`Job::Read`]); complete records may be
    /// left in the input.
    Full,
    /// Both sides sent `close_notify`: nothing more flows.
    Closed,
}

/// What ended a run badly.
#[derive(Debug)]
pub(super) enum Fault {
    /// The session failed (its alert is queued: a [`Job::Send`] sends it).
    Tls(rustls::Error),
    /// The sink failed, or rustls refused to encrypt more.
    Io(io::Error),
}

/// Runs the session over `buf` until it needs more input (or the
/// destination is full, for a read), doing `job` once application data may
/// be written. Returns how many bytes of `buf`'s front are consumed (the
/// caller drops them and keeps the rest for the next run) and why it
/// stopped. `peer_closed` is set when the peer's `close_notify` arrives.
pub(super) fn drive<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    tx: &mut Tx<'_, '_>,
    plain: &mut Plain<'_>,
    job: Job<'_>,
    peer_closed: &mut bool,
) -> (usize, Result<Stop, Fault>) {
    let (consumed, stop) = drive_records(conn, buf, tx, plain, job, peer_closed);
    // What a write run held back for its own records (see
    // `TransmitTlsData` below) and did not send with them leaves now.
    match tx.flush_handshake() {
        Err(e) if stop.is_ok() => (consumed, Err(Fault::Io(e))),
        _ => (consumed, stop),
    }
}

/// [`drive`]'s loop over rustls's states.
fn drive_records<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    tx: &mut Tx<'_, '_>,
    plain: &mut Plain<'_>,
    job: Job<'_>,
    peer_closed: &mut bool,
) -> (usize, Result<Stop, Fault>) {
    let mut consumed = 0;
    loop {
        let UnbufferedStatus { discard, state } = conn.process(&mut buf[consumed..]);
        let state = match state {
            Ok(state) => state,
            Err(e) => return (consumed + discard, Err(Fault::Tls(e))),
        };
        let mut stop = None;
        let mut fault = None;
        let mut drained = false;
        match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    match record {
                        Ok(record) => plain.put(record.payload),
                        Err(e) => {
                            fault = Some(Fault::Tls(e));
                            break;
                        }
                    }
                }
                if matches!(job, Job::Read) {
                    if plain.full() {
                        stop = Some(Stop::Full);
                    } else {
                        drained = true;
                    }
                }
            }
            ConnectionState::ReadEarlyData(mut early) => {
                if let Err(e) = C::read_early(&mut early, plain) {
                    fault = Some(Fault::Tls(e));
                }
            }
            ConnectionState::EncodeTlsData(mut record) => {
                if let Err(e) = encode(&mut record, tx.handshake) {
                    fault = Some(e);
                }
            }
            ConnectionState::TransmitTlsData(sent) => {
                // Without a sink the records wait, in order, in `handshake`.
                // A write run keeps them there too: they leave in one write
                // with its own records (the session tickets with the first
                // reply; see `write_job`), or at the run's end.
                if matches!(job, Job::Read) {
                    match tx.flush_handshake() {
                        Ok(()) => sent.done(),
                        Err(e) => fault = Some(Fault::Io(e)),
                    }
                } else {
                    sent.done();
                }
            }
            ConnectionState::PeerClosed => *peer_closed = true,
            ConnectionState::Closed => stop = Some(Stop::Closed),
            ConnectionState::BlockedHandshake => stop = Some(Stop::Handshaking),
            ConnectionState::WriteTraffic(mut traffic) => {
                if let Err(e) = write_job(&mut traffic, tx, &job) {
                    fault = Some(e);
                }
                stop = Some(Stop::Idle);
            }
            // A state this version does not know: wait for input.
            _ => stop = Some(Stop::Handshaking),
        }
        consumed += discard;
        if let Some(fault) = fault {
            return (consumed, Err(fault));
        }
        if drained && !starts_with_record(&buf[consumed..]) {
            // A read that took application data stops when no whole record
            // is left, without asking rustls again (it would only say so).
            return (consumed, Ok(Stop::Idle));
        }
        if let Some(stop) = stop {
            return (consumed, Ok(stop));
        }
    }
}

/// The common write, without [`drive`]'s generality: an open session that
/// owes the peer nothing and holds no input (the caller checks) is asked
/// once for its state, which is then `WriteTraffic`. Returns `None`, having
/// lost nothing, when it is not: the caller then runs [`drive`]. (With no
/// records queued and no input, rustls can only answer `WriteTraffic`,
/// `Closed`, `BlockedHandshake` or, once, `PeerClosed`, noted here.)
pub(super) fn seal_open<C: Records>(
    conn: &mut C,
    bufs: &[&[u8]],
    sink: &mut SocketSink<'_>,
    peer_closed: &mut bool,
) -> Option<Result<(), Fault>> {
    let UnbufferedStatus { state, .. } = conn.process(&mut []);
    match state {
        Ok(ConnectionState::WriteTraffic(mut traffic)) => Some(seal(&mut traffic, bufs, sink, &[])),
        Ok(ConnectionState::PeerClosed) => {
            *peer_closed = true;
            None
        }
        _ => None,
    }
}

/// Whether `input` starts with a whole TLS record (header and body).
fn starts_with_record(input: &[u8]) -> bool {
    match input.get(..5) {
        Some(header) => input.len() >= 5 + usize::from(u16::from_be_bytes([header[3], header[4]])),
        None => false,
    }
}

/// Appends a handshake record (or alert) to `out`.
fn encode<D>(record: &mut EncodeTlsData<'_, D>, out: &mut Vec<u8>) -> Result<(), Fault> {
    let at = out.len();
    let need = match record.encode(&mut []) {
        Err(EncodeError::InsufficientSize(e)) => e.required_size,
        _ => 0,
    };
    out.resize(at + need, 0);
    match record.encode(&mut out[at..]) {
        Ok(n) => out.truncate(at + n),
        Err(EncodeError::AlreadyEncoded) => out.truncate(at),
        Err(e) => {
            out.truncate(at);
            return Err(Fault::Io(io::Error::other(e.to_string())));
        }
    }
    Ok(())
}

/// After the session failed: encodes the alert rustls queued and hands it
/// to the sink. Unlike [`drive`] it never lets rustls deframe input again
/// (which would fail, and alert, a second time): it only asks while rustls
/// has records queued, which it hands out before looking at input.
pub(super) fn drain_alerts<C: Records>(conn: &mut C, tx: &mut Tx<'_, '_>) -> io::Result<()> {
    while conn.common().wants_write() {
        let UnbufferedStatus { state, .. } = conn.process(&mut []);
        match state {
            Ok(ConnectionState::EncodeTlsData(mut record)) => {
                if encode(&mut record, tx.handshake).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    tx.flush_handshake()
}

/// The job's writes, once application data may flow: what the handshake
/// left, then the early plaintext, then the job's own records.
fn write_job<D>(
    traffic: &mut WriteTraffic<'_, D>,
    tx: &mut Tx<'_, '_>,
    job: &Job<'_>,
) -> Result<(), Fault> {
    if matches!(job, Job::Read) {
        return Ok(());
    }
    let Some(sink) = tx.sink.as_deref_mut() else {
        return Ok(());
    };
    // What the handshake left (the session tickets, held for the first
    // reply) leaves in one write with the first records sealed here.
    let mut flight = std::mem::take(tx.handshake);
    if !tx.early.is_empty() {
        let early = std::mem::take(tx.early);
        seal(traffic, &[&early], sink, &std::mem::take(&mut flight))?;
    }
    match job {
        Job::Seal(bufs) => seal(traffic, bufs, sink, &flight),
        Job::CloseNotify => with_scratch(|scratch| {
            let n = loop {
                match traffic.queue_close_notify(scratch) {
                    Ok(n) => break n,
                    Err(EncryptError::InsufficientSize(e)) if e.required_size > scratch.len() => {
                        scratch.resize(e.required_size, 0);
                    }
                    Err(e) => return Err(Fault::Io(io::Error::other(e.to_string()))),
                }
            };
            sink.put_after(&flight, &scratch[..n]).map_err(Fault::Io)
        }),
        Job::Read | Job::Send => sink.put_after(&flight, &[]).map_err(Fault::Io),
    }
}

/// Runs `f` with the thread's scratch buffer (at least [`SEAL_ROOM`] long).
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut scratch = SEAL.take();
    if scratch.len() < SEAL_ROOM {
        scratch.resize(SEAL_ROOM, 0);
    }
    let result = f(&mut scratch);
    SEAL.set(scratch);
    result
}

/// Encrypts `bufs`, in order, into the scratch buffer and hands the records
/// to `sink` (once for the lot, unless they pass the scratch's size), the
/// first of them behind `first` (records already encoded: one write for
/// both, see [`SocketSink::put_after`]).
fn seal<D>(
    traffic: &mut WriteTraffic<'_, D>,
    bufs: &[&[u8]],
    sink: &mut SocketSink<'_>,
    mut first: &[u8],
) -> Result<(), Fault> {
    with_scratch(|scratch| {
        let mut filled = 0;
        for buf in bufs {
            for chunk in buf.chunks(SEAL_STEP) {
                loop {
                    match traffic.encrypt(chunk, &mut scratch[filled..]) {
                        Ok(n) => {
                            filled += n;
                            break;
                        }
                        Err(EncryptError::InsufficientSize(_)) if filled > 0 => {
                            sink.put_after(first, &scratch[..filled])
                                .map_err(Fault::Io)?;
                            first = &[];
                            filled = 0;
                        }
                        Err(EncryptError::InsufficientSize(e))
                            if e.required_size > scratch.len() =>
                        {
                            scratch.resize(e.required_size, 0);
                        }
                        Err(e) => return Err(Fault::Io(io::Error::other(e.to_string()))),
                    }
                }
            }
        }
        sink.put_after(first, &scratch[..filled]).map_err(Fault::Io)
    })
}
