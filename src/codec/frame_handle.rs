//! [`FrameHandle`]: sends frames to a connection from any thread, encoded
//! with the connection's codec.
//!
//! Owns encoding on the sender's side and nothing else: the encoded bytes
//! travel as an ordinary [`ConnHandle::async_write`], so every guarantee of
//! the handle (order, back-pressure, completion) is the handle's own. It
//! never touches a loop's state.
//!
//! Why the sender encodes is told in [`FrameHandle`]'s docs.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::{Codec, CodecError};
use crate::{ConnHandle, Pending};

/// Encodes frames for a [`FrameHandle`] from any thread.
pub(crate) trait FrameEncoder: Send + Sync {
    /// Appends `frame`, encoded, to `dst`; on error `dst` is as it was.
    fn encode(&self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError>;
}

/// A codec as configured, encoding with a fresh copy each time (the copy
/// is a few words, or one reference count for [`DelimiterCodec`]).
///
/// [`DelimiterCodec`]: super::DelimiterCodec
pub(super) struct Prototype<C>(pub(super) C);

impl<C: Codec + Clone + Send + Sync> FrameEncoder for Prototype<C> {
    fn encode(&self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = dst.len();
        let result = self.0.clone().encode(frame, dst);
        if result.is_err() {
            dst.truncate(start); // in case the codec did not
        }
        result
    }
}

/// A `Send + Sync + Clone` handle to a framed connection that sends
/// frames from any thread (worker replies, broadcasts), encoded with the
/// connection's codec. Get one with
/// [`FrameConn::frame_handle`](super::FrameConn::frame_handle) in a
/// callback, or make one from any [`ConnHandle`] and a codec with
/// [`FrameHandle::new`] (a connection dialled with
/// [`EngineHandle::dial`](crate::EngineHandle::dial), say).
///
/// It is a [`ConnHandle`] too (through `Deref`): [`id`](ConnHandle::id),
/// [`wake`](ConnHandle::wake), [`close`](ConnHandle::close),
/// [`resume_reading`](ConnHandle::resume_reading) and raw writes are there.
///
/// In short: a frame is encoded on the sender's thread; a refused frame
/// is a typed error to the sender and nothing else; frames keep the causal
/// order of every other request made through handles; back-pressure and
/// completion are those of [`ConnHandle::async_write`].
///
/// # Why the sender encodes
///
/// The frame is encoded on the thread that sends it, with the codec the
/// handle was made from, rather than on the loop that owns the connection:
///
/// - the loop's thread is the scarce one; the sender has to copy the frame
///   into an owned buffer anyway, and encoding *is* that copy (plus a
///   header or delimiter);
/// - a frame the codec refuses (too long, a delimiter inside) is refused
///   at once, to the caller, as a typed [`CodecError`]; nothing is sent and
///   the connection is not affected;
/// - the encoded frame is one write message, so frames keep the order of
///   [`ConnHandle`] requests: those sent by one thread arrive in the order
///   sent, and a frame sent after another thread's frame was sent (after
///   seeing that send return) arrives after it ("causal order", see
///   `ringloop-actors`' mailbox) — the loop needs no new kind of message.
///
/// The cost: a handle encodes with its own copy of the codec as it was
/// configured, not with the copy a connection decodes with. The built-in
/// codecs' encoders keep no state between frames, so this changes nothing
/// for them; a user-defined codec whose encoding depends on earlier frames
/// (a sequence number, a compression context) should encode on the loop
/// instead: hand the frame over (a queue in the connection's state) and
/// [`wake`](ConnHandle::wake) it, then [`FrameConn::write_frame`] in
/// [`FrameHandler::on_wake`].
///
/// [`FrameConn::write_frame`]: super::FrameConn::write_frame
/// [`FrameHandler::on_wake`]: super::FrameHandler::on_wake
///
/// ```
/// use std::io::{Read, Write};
/// use ringloop::codec::{FrameConn, FrameHandler, Framed, LengthFieldCodec};
/// use ringloop::{Action, Engine};
///
/// /// Answers each request on the worker pool, as a frame.
/// struct Rpc;
/// impl FrameHandler for Rpc {
///     type State = ();
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, request: &[u8]) -> Action {
///         let frames = conn.frame_handle();
///         let request = request.to_vec();
///         let submitted = conn.engine().submit(move || {
///             let reply = request.to_ascii_uppercase(); // the slow part
///             let _ = frames.send_frame(&reply, |_| {});
///         });
///         match submitted {
///             Ok(()) => Action::None,
///             Err(_) => Action::Close,
///         }
///     }
/// }
///
/// let codec = LengthFieldCodec::builder().length_field_length(2).build()?;
/// let server = Engine::builder(move |_| Framed::new(codec, Rpc))
///     .listen("tcp://127.0.0.1:0")
///     .loops(1)
///     .build()?;
/// let engine = server.handle();
/// let addr = engine.local_addrs()[0].sock_addr().as_inet().unwrap();
/// let runner = std::thread::spawn(move || server.run());
///
/// let mut client = std::net::TcpStream::connect(addr)?;
/// client.write_all(b"\0\x05hello")?;
/// let mut reply = [0u8; 7];
/// client.read_exact(&mut reply)?;
/// assert_eq!(&reply, b"\0\x05HELLO");
///
/// engine.stop();
/// runner.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct FrameHandle {
    conn: ConnHandle,
    encoder: Arc<dyn FrameEncoder>,
}

impl FrameHandle {
    /// Sends frames to the connection of `conn`, encoded with `codec`
    /// (which should be the one the connection's peer decodes with).
    ///
    /// ```
    /// use ringloop::codec::{FrameHandle, LineCodec};
    /// use ringloop::Engine;
    ///
    /// # let server = Engine::builder(|_| ringloop::codec::Framed::new(LineCodec::new(), Sink))
    /// #     .listen("tcp://127.0.0.1:0").loops(1).build()?;
    /// # struct Sink;
    /// # impl ringloop::codec::FrameHandler for Sink {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut ringloop::codec::FrameConn<'_, ()>, _: &[u8]) -> ringloop::Action { ringloop::Action::None }
    /// # }
    /// # let addr = server.handle().local_addrs()[0].to_string();
    /// # let listener = server.handle();
    /// # let runner = std::thread::spawn(move || server.run());
    /// // A client engine dials a line-speaking server and sends it a line.
    /// # struct Client;
    /// # impl ringloop::EventHandler for Client { type State = (); }
    /// let client = Engine::builder(|_| Client).loops(1).build()?;
    /// let engine = client.handle();
    /// let running = std::thread::spawn(move || client.run());
    /// let conn = engine.dial(&addr).wait()?;
    /// let lines = FrameHandle::new(conn, LineCodec::new());
    /// lines.write_frame(b"hello")?.wait()?;
    /// engine.stop();
    /// running.join().unwrap()?;
    /// # listener.stop();
    /// # runner.join().unwrap()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<C>(conn: ConnHandle, codec: C) -> Self
    where
        C: Codec + Clone + Send + Sync + 'static,
    {
        Self::from_parts(conn, Arc::new(Prototype(codec)))
    }

    pub(super) fn from_parts(conn: ConnHandle, encoder: Arc<dyn FrameEncoder>) -> Self {
        Self { conn, encoder }
    }

    /// The frame as the codec puts it on the wire, for sending as raw
    /// bytes (say, one encoding copied to many connections).
    ///
    /// ```
    /// # use ringloop::codec::{FrameHandle, LineCodec};
    /// # fn show(frames: &FrameHandle) -> Result<(), ringloop::codec::CodecError> {
    /// // `frames` was made with a LineCodec.
    /// assert_eq!(frames.encode(b"hi")?, b"hi\n");
    /// assert!(frames.encode(b"two\nlines").is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn encode(&self, frame: &[u8]) -> Result<Vec<u8>, CodecError> {
        let mut wire = Vec::with_capacity(frame.len() + 16);
        self.encoder.encode(frame, &mut wire)?;
        Ok(wire)
    }

    /// Encodes `frames` into one buffer, in order.
    fn encode_all<'f>(
        &self,
        frames: impl IntoIterator<Item = &'f [u8]>,
    ) -> Result<Vec<u8>, CodecError> {
        let mut wire = Vec::new();
        for frame in frames {
            self.encoder.encode(frame, &mut wire)?;
        }
        Ok(wire)
    }

    /// Encodes `frame` and writes it on the owning loop, as
    /// [`ConnHandle::async_write`]: waits for room if this thread's lane
    /// into the loop is full (never on a loop thread), and `on_done` runs
    /// on the loop with `Ok(bytes on the wire)` once written or queued, or
    /// with the error (the connection closed, the engine stopped).
    ///
    /// If the codec refuses the frame, its error is returned at once,
    /// nothing is sent, the connection is not affected, and `on_done` is
    /// dropped without running. Otherwise `on_done` runs exactly once, and
    /// a request that could not be delivered is also returned as
    /// [`CodecError::Io`].
    ///
    /// ```
    /// # use ringloop::codec::{CodecError, FrameHandle};
    /// # fn reply(frames: FrameHandle, body: Vec<u8>) {
    /// match frames.send_frame(&body, |written| {
    ///     if let Err(e) = written {
    ///         log::debug!("reply lost: {e}"); // the peer left
    ///     }
    /// }) {
    ///     Ok(()) => {}
    ///     Err(CodecError::Io(e)) => log::debug!("engine stopping: {e}"),
    ///     Err(refused) => log::warn!("reply not sendable: {refused}"),
    /// }
    /// # }
    /// ```
    pub fn send_frame(
        &self,
        frame: &[u8],
        on_done: impl FnOnce(crate::Result<usize>) + Send + 'static,
    ) -> Result<(), CodecError> {
        let wire = self.encode(frame)?;
        self.conn.async_write(wire, on_done).map_err(CodecError::Io)
    }

    /// [`send_frame`](Self::send_frame) for several frames, encoded into one
    /// message (one write on the loop when the socket takes it). If the
    /// codec refuses any of them, none is sent.
    ///
    /// ```
    /// # use ringloop::codec::FrameHandle;
    /// # fn replies(frames: FrameHandle) -> Result<(), ringloop::codec::CodecError> {
    /// let batch: [&[u8]; 3] = [b"one", b"two", b"three"];
    /// frames.send_frames(batch, |_| {})?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn send_frames<'f>(
        &self,
        frames: impl IntoIterator<Item = &'f [u8]>,
        on_done: impl FnOnce(crate::Result<usize>) + Send + 'static,
    ) -> Result<(), CodecError> {
        let wire = self.encode_all(frames)?;
        self.conn.async_write(wire, on_done).map_err(CodecError::Io)
    }

    /// Like [`send_frame`](Self::send_frame) without a callback, but never
    /// waits: if this thread's lane into the loop is full it fails with
    /// [`CodecError::Io`]`(`[`Error::MailboxFull`](crate::Error::MailboxFull)`)`
    /// and nothing is sent (the frame is still the caller's, to send
    /// again later or to drop). Made for broadcasts, where one slow
    /// connection must not hold up the others.
    ///
    /// ```
    /// # use ringloop::codec::{CodecError, FrameHandle};
    /// # fn broadcast(room: &[FrameHandle], line: &[u8]) {
    /// for member in room {
    ///     match member.try_send_frame(line) {
    ///         Ok(()) => {}
    ///         Err(CodecError::Io(ringloop::Error::MailboxFull)) => {} // slow: skips this one
    ///         Err(e) => log::debug!("{}: {e}", member.id()),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn try_send_frame(&self, frame: &[u8]) -> Result<(), CodecError> {
        let wire = self.encode(frame)?;
        self.conn
            .try_async_write(wire)
            .map_err(|refused| CodecError::Io(refused.error))
    }

    /// An awaitable [`send_frame`](Self::send_frame): the codec's refusal
    /// now, the write's outcome later (block with [`Pending::wait`] or
    /// `.await` it).
    ///
    /// ```
    /// # use ringloop::codec::FrameHandle;
    /// # fn hello(frames: FrameHandle) -> Result<(), Box<dyn std::error::Error>> {
    /// let on_the_wire = frames.write_frame(b"hello")?.wait()?;
    /// # let _ = on_the_wire;
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_frame(&self, frame: &[u8]) -> Result<Pending<usize>, CodecError> {
        Ok(self.conn.write(self.encode(frame)?))
    }

    /// The plain handle: raw writes, `wake`, `close`, …
    pub fn conn_handle(&self) -> &ConnHandle {
        &self.conn
    }
}

impl Deref for FrameHandle {
    type Target = ConnHandle;

    /// The plain handle (see [`FrameHandle::conn_handle`]).
    fn deref(&self) -> &ConnHandle {
        &self.conn
    }
}

impl fmt::Debug for FrameHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameHandle")
            .field("id", &self.conn.id())
            .finish_non_exhaustive()
    }
}
