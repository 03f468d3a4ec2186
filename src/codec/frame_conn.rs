//! [`FrameConn`]: a framed connection inside a [`FrameHandler`] callback —
//! the whole [`Conn`] (through `Deref`), plus writes that go through the
//! connection's codec.
//!
//! Owns the write path of one callback: encoding frames into the loop's
//! coalescing buffer and keeping every write to this connection (frames,
//! raw bytes, a FIN) in the order the handler made it. Methods of [`Conn`]
//! that would write past that buffer or that speak of the whole
//! [`FramedState`] are shadowed here by versions that keep the order and
//! speak of the handler's state. It never decodes ([`Framed`] does) and
//! never touches a socket itself.
//!
//! [`FrameHandler`]: super::FrameHandler
//! [`Framed`]: super::Framed

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::frame_handle::{FrameEncoder, FrameHandle};
use super::framed::FramedState;
use super::{Codec, CodecError};
use crate::tls::TlsConnector;
use crate::{Conn, ConnId};

/// Encoded output is written to the connection once it reaches this size,
/// and at the end of every callback.
const FLUSH_AT: usize = 64 * 1024;
/// The output buffer is shrunk back when a large frame grew it past this.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Writes what a callback queued in `out` to the connection, and forgets it.
pub(super) fn write_out<S>(conn: &mut Conn<'_, S>, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if out.is_empty() {
        return Ok(());
    }
    let result = conn.write(out);
    out.clear();
    if out.capacity() > KEEP_CAPACITY {
        out.shrink_to(FLUSH_AT);
    }
    result.map(drop).map_err(CodecError::Io)
}

/// A framed connection, inside a [`FrameHandler`](super::FrameHandler)
/// callback on the loop that owns it.
///
/// It is a full [`Conn`]: everything `Conn` offers (its [`id`](Conn::id),
/// [`engine`](Conn::engine), [`write_to`](Conn::write_to),
/// [`link`](Conn::link), [`shutdown_write_of`](Conn::shutdown_write_of),
/// [`pause_reading`](Conn::pause_reading), addresses, TLS details, socket
/// options, raw reads of bytes not yet decoded, …) is reached through
/// `Deref`. On top of that it writes frames through the connection's codec
/// ([`write_frame`](Self::write_frame), [`write_frame_to`](Self::write_frame_to)),
/// hands out [`FrameHandle`]s for other threads
/// ([`frame_handle`](Self::frame_handle)), and shadows the `Conn` methods
/// whose plain version would be wrong here:
///
/// - writes ([`write`](Self::write), [`writev`](Self::writev),
///   [`write_vec`](Self::write_vec), `io::Write`, [`flush`](Self::flush),
///   [`shutdown_write`](Self::shutdown_write)) keep their order with the
///   frames written in the same callback;
/// - [`outbound_buffered`](Self::outbound_buffered) counts the frames not
///   yet handed to the connection;
/// - [`close`](Self::close) and [`close_with_error`](Self::close_with_error)
///   also stop the delivery of the frames after this one;
/// - state ([`state`](Self::state), [`state_of_mut`](Self::state_of_mut),
///   [`dial`](Self::dial), …) is the handler's [`State`](super::FrameHandler::State).
///
/// `S` is the handler's [`State`](super::FrameHandler::State) type.
///
/// ```
/// use ringloop::codec::{FrameConn, FrameHandler};
/// use ringloop::Action;
///
/// /// Echoes each frame, then tells the peer which connection it is.
/// struct Echo;
/// impl FrameHandler for Echo {
///     type State = ();
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
///         let id = conn.id(); // a Conn method, through Deref
///         match conn.write_frame(frame) {
///             Ok(()) => {
///                 let _ = conn.write_frame(format!("you are {id}").as_bytes());
///                 Action::None
///             }
///             Err(_) => Action::Close,
///         }
///     }
/// }
/// ```
pub struct FrameConn<'c, S> {
    conn: Conn<'c, FramedState<S>>,
    out: &'c mut Vec<u8>,
    codec: &'c mut dyn Codec,
    encoder: &'c Arc<dyn FrameEncoder>,
}

impl<'c, S> FrameConn<'c, S> {
    pub(super) fn new(
        conn: Conn<'c, FramedState<S>>,
        out: &'c mut Vec<u8>,
        codec: &'c mut dyn Codec,
        encoder: &'c Arc<dyn FrameEncoder>,
    ) -> Self {
        Self {
            conn,
            out,
            codec,
            encoder,
        }
    }

    pub(super) fn into_conn(self) -> Conn<'c, FramedState<S>> {
        self.conn
    }

    /// Writes out the queue once it is large.
    fn queued(&mut self) -> Result<(), CodecError> {
        if self.out.len() >= FLUSH_AT {
            write_out(&mut self.conn, self.out)?;
        }
        Ok(())
    }

    /// Encodes `frame` with the connection's codec and queues it; what a
    /// callback writes goes out in one write when it returns (or as soon as
    /// 64 KiB are queued). Fails if the codec refuses the frame (nothing is
    /// written then; the connection is unaffected) or the connection is
    /// broken.
    ///
    /// ```
    /// # use ringloop::codec::{CodecError, FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Echo;
    /// # impl FrameHandler for Echo {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     match conn.write_frame(frame) {
    ///         Ok(()) => Action::None,
    ///         // The reply cannot be framed (too long, say): say so instead.
    ///         Err(CodecError::Io(_)) => Action::Close,
    ///         Err(_) => {
    ///             let _ = conn.write_frame(b"ERR reply too large");
    ///             Action::None
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), CodecError> {
        let start = self.out.len();
        if let Err(e) = self.codec.encode(frame, self.out) {
            self.out.truncate(start); // in case the codec did not
            return Err(e);
        }
        self.queued()
    }

    /// Encodes `frame` with this connection's codec and writes it to
    /// `other`, another connection of this loop (say, the other side of a
    /// relay; every connection of the loop has the same codec). Fails if
    /// the codec refuses the frame, or as [`Conn::write_to`] does.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::{Action, ConnId};
    /// # struct Relay;
    /// # impl FrameHandler for Relay {
    /// #     type State = Option<ConnId>; // the other side
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, Option<ConnId>>, frame: &[u8]) -> Action {
    ///     let Some(&Some(other)) = conn.state() else { return Action::None };
    ///     match conn.write_frame_to(other, frame) {
    ///         Ok(()) => Action::None,
    ///         Err(_) => Action::Close,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn write_frame_to(&mut self, other: ConnId, frame: &[u8]) -> Result<(), CodecError> {
        if other == self.conn.id() {
            return self.write_frame(frame);
        }
        let mut wire = Vec::with_capacity(frame.len() + 16);
        self.codec.encode(frame, &mut wire)?;
        self.conn
            .write_to(other, &wire)
            .map(drop)
            .map_err(CodecError::Io)
    }

    /// Queues bytes as they are, bypassing the codec, in order with the
    /// frames written before and after.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Hello;
    /// # impl FrameHandler for Hello {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
    ///     let _ = conn.write_raw(b"SERVER READY\r\n"); // a banner outside the framing
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.out.extend_from_slice(bytes);
        self.queued()
    }

    /// [`Conn::write`] in order with the frames: queues bytes as they are,
    /// bypassing the codec (see [`write_raw`](Self::write_raw)). Returns
    /// `data.len()`.
    pub fn write(&mut self, data: &[u8]) -> crate::Result<usize> {
        self.write_raw(data).map_err(into_error)?;
        Ok(data.len())
    }

    /// [`Conn::writev`] in order with the frames (see [`write`](Self::write)).
    pub fn writev(&mut self, bufs: &[&[u8]]) -> crate::Result<usize> {
        let mut total = 0;
        for buf in bufs {
            total += self.write(buf)?;
        }
        Ok(total)
    }

    /// [`Conn::write_vec`] in order with the frames (see [`write`](Self::write)).
    pub fn write_vec(&mut self, data: Vec<u8>) -> crate::Result<usize> {
        self.write(&data)
    }

    /// Writes the queued frames to the connection now, and tries to write
    /// its outbound queue to the socket.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Eager;
    /// # impl FrameHandler for Eager {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     let _ = conn.write_frame(frame);
    ///     let _ = conn.flush(); // do not wait for the end of the callback
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn flush(&mut self) -> Result<(), CodecError> {
        write_out(&mut self.conn, self.out)?;
        self.conn.flush().map_err(CodecError::Io)
    }

    /// [`Conn::shutdown_write`] after the frames written so far: they go
    /// out, then the FIN.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Last;
    /// # impl FrameHandler for Last {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if frame == b"BYE" {
    ///         let _ = conn.write_frame(b"BYE");
    ///         conn.shutdown_write(); // the peer reads "BYE", then end of stream
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn shutdown_write(&mut self) {
        // A failed write dooms the connection; the FIN no longer matters.
        let _ = write_out(&mut self.conn, self.out);
        self.conn.shutdown_write();
    }

    /// Bytes written but not yet taken by the socket (queued frames plus
    /// the connection's outbound queue): a measure of back-pressure.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Polite;
    /// # impl FrameHandler for Polite {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if conn.outbound_buffered() > 64 << 20 {
    ///         return Action::Close; // the peer does not read its replies
    ///     }
    ///     let _ = conn.write_frame(frame);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn outbound_buffered(&self) -> usize {
        self.out.len() + self.conn.outbound_buffered()
    }

    /// Closes the connection after this callback (after writing what was
    /// written); no further frame is delivered.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Quit;
    /// # impl FrameHandler for Quit {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if frame == b"QUIT" {
    ///         let _ = conn.write_frame(b"BYE");
    ///         conn.close();
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn close(&mut self) {
        self.stop_delivery();
        self.conn.close();
    }

    /// [`Conn::close_with_error`]: closes for a protocol error after this
    /// callback (after writing what was written); no further frame is
    /// delivered, and the close callback gets the error.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Strict;
    /// # impl FrameHandler for Strict {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if !frame.starts_with(b"v1 ") {
    ///         let _ = conn.write_frame(b"ERR unknown version");
    ///         conn.close_with_error("the peer speaks another version");
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn close_with_error(&mut self, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) {
        self.stop_delivery();
        self.conn.close_with_error(error);
    }

    fn stop_delivery(&mut self) {
        if let Some(state) = self.conn.state_mut() {
            state.closing = true;
        }
    }

    /// This connection's state, if set.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Login;
    /// # impl FrameHandler for Login {
    /// #     type State = String;
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, String>, frame: &[u8]) -> Action {
    ///     if conn.state().is_none() {
    ///         conn.set_state(String::from_utf8_lossy(frame).into_owned()); // first frame: user name
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state(&self) -> Option<&S> {
        self.conn.state().and_then(|s| s.user.as_ref())
    }

    /// This connection's state, mutably, if set.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Count;
    /// # impl FrameHandler for Count {
    /// #     type State = u32;
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, u32>, _frame: &[u8]) -> Action {
    ///     *conn.state_mut().unwrap_or(&mut 0) += 1;
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state_mut(&mut self) -> Option<&mut S> {
        self.user_slot().and_then(Option::as_mut)
    }

    fn user_slot(&mut self) -> Option<&mut Option<S>> {
        self.conn.state_mut().map(|s| &mut s.user)
    }

    /// Sets this connection's state, returning the old one.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Count;
    /// # impl FrameHandler for Count {
    /// #     type State = u32;
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, u32>, _: &[u8]) -> Action { Action::None }
    /// fn on_open(&mut self, conn: &mut FrameConn<'_, u32>) -> Action {
    ///     conn.set_state(0);
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn set_state(&mut self, state: S) -> Option<S> {
        match self.user_slot() {
            Some(slot) => slot.replace(state),
            None => {
                self.conn.set_state(FramedState::new(Some(state)));
                None
            }
        }
    }

    /// Removes this connection's state.
    ///
    /// ```
    /// # use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Keep(Vec<String>);
    /// # impl FrameHandler for Keep {
    /// #     type State = String;
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, String>, _: &[u8]) -> Action { Action::None }
    /// fn on_close(&mut self, conn: &mut FrameConn<'_, String>, _: FrameCloseReason<'_>) -> Action {
    ///     self.0.extend(conn.take_state());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn take_state(&mut self) -> Option<S> {
        self.user_slot().and_then(Option::take)
    }

    /// The state of `other`, another connection of this loop (see
    /// [`Conn::state_of_mut`]).
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::{Action, ConnId};
    /// # struct Pair;
    /// # impl FrameHandler for Pair {
    /// #     type State = (Option<ConnId>, u64); // (the other side, frames it was sent)
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, (Option<ConnId>, u64)>, frame: &[u8]) -> Action {
    ///     let Some(&(Some(other), _)) = conn.state() else { return Action::None };
    ///     if conn.write_frame_to(other, frame).is_ok() {
    ///         if let Ok(Some(state)) = conn.state_of_mut(other) {
    ///             state.1 += 1;
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn state_of_mut(&mut self, other: ConnId) -> crate::Result<Option<&mut S>> {
        Ok(self.conn.state_of_mut(other)?.and_then(|s| s.user.as_mut()))
    }

    /// Dials `addr` onto this loop as another framed connection of this
    /// handler, with `state` as its state (see [`Conn::dial`]): its
    /// `on_open` runs once connected, a failure reaches
    /// [`on_dial_error`](super::FrameHandler::on_dial_error).
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::{Action, ConnId};
    /// # struct Gateway;
    /// # impl FrameHandler for Gateway {
    /// #     type State = Option<ConnId>;
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, Option<ConnId>>, _: &[u8]) -> Action { Action::None }
    /// fn on_open(&mut self, conn: &mut FrameConn<'_, Option<ConnId>>) -> Action {
    ///     if conn.listener_index().is_some() {
    ///         // A client: dial its backend, which learns the client's id.
    ///         let client = conn.id();
    ///         if conn.dial("tcp://127.0.0.1:7000", Some(client)).is_err() {
    ///             return Action::Close;
    ///         }
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn dial(&mut self, addr: &str, state: S) -> crate::Result<()> {
        self.conn.dial(addr, FramedState::new(Some(state)))
    }

    /// [`dial`](Self::dial) of a `tls://` address, verifying the server
    /// with `connector` (see [`Conn::dial_tls`]).
    pub fn dial_tls(&mut self, addr: &str, connector: TlsConnector, state: S) -> crate::Result<()> {
        self.conn
            .dial_tls(addr, connector, FramedState::new(Some(state)))
    }

    /// A `Send + Sync + Clone` handle for other threads that sends frames
    /// through this connection's codec (see [`FrameHandle`]); it is also a
    /// [`ConnHandle`](crate::ConnHandle) (`wake`, `close`, raw writes, …).
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Later;
    /// # impl FrameHandler for Later {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, _frame: &[u8]) -> Action {
    ///     let frames = conn.frame_handle();
    ///     std::thread::spawn(move || {
    ///         let _ = frames.send_frame(b"done", |_| {}); // encoded with the codec
    ///     });
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn frame_handle(&self) -> FrameHandle {
        FrameHandle::from_parts(self.conn.handle(), self.encoder.clone())
    }
}

/// A failed raw write, as [`Conn::write`] reports it.
fn into_error(error: CodecError) -> crate::Error {
    match error {
        CodecError::Io(e) => e,
        other => crate::Error::io("write", io::Error::other(other.to_string())),
    }
}

impl<'c, S> Deref for FrameConn<'c, S> {
    type Target = Conn<'c, FramedState<S>>;

    /// The connection: every [`Conn`] method this type does not shadow.
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<S> DerefMut for FrameConn<'_, S> {
    /// The connection, mutably. Writes made through `Conn`'s own methods
    /// (`Conn::write(&mut conn, ..)`) skip the frames queued in this
    /// callback; use the methods of `FrameConn` to keep the order.
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl<S> io::Write for FrameConn<'_, S> {
    /// Queues `buf` raw, in order with the frames (see [`FrameConn::write_raw`]).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        FrameConn::write(self, buf).map_err(|e| io::Error::other(e.to_string()))
    }

    fn flush(&mut self) -> io::Result<()> {
        FrameConn::flush(self).map_err(|e| io::Error::other(e.to_string()))
    }
}

impl<S> fmt::Debug for FrameConn<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameConn")
            .field("loop", &self.loop_index())
            .field("peer", self.peer_addr())
            .field("inbound", &self.inbound_buffered())
            .field("outbound", &self.outbound_buffered())
            .finish()
    }
}
