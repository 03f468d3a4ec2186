//! [`Framed`]: runs a [`FrameHandler`] on a server through a [`Codec`], so
//! the handler receives whole frames one at a time and writes frames.
//!
//! Owns the decode loop over a connection's read view, each connection's
//! copy of the codec, the output buffer that coalesces one callback's
//! frames, holding frames back while the handler has paused reading, and
//! turning a codec error into a closed connection whose reason reaches
//! [`FrameHandler::on_close`]. The connection a handler sees is a
//! [`FrameConn`] (its own file); frames from other threads go through a
//! [`FrameHandle`](super::FrameHandle).
//!
//! # One `on_traffic`
//!
//! ```text
//!   unread bytes ──▶ codec.decode ──▶ Some(frame) ──▶ on_frame(frame) ─┐
//!        ▲                 │                                            │
//!        └── consume frame ┼────────────────────────────────────────────┘
//!                          ├─▶ None: leave the partial frame unconsumed
//!                          └─▶ Err:  discard, close, remember the error
//!   then: write what on_frame encoded, in one write
//! ```

use std::fmt;
use std::sync::Arc;

use super::frame_conn::{write_out, FrameConn};
use super::frame_handle::{FrameEncoder, Prototype};
use super::{Codec, CodecError};
use crate::{Action, CloseReason, Conn, EventHandler, LoopContext, SockAddr};

/// Why a framed connection closed; given to [`FrameHandler::on_close`].
///
/// ```
/// use ringloop::codec::{CodecError, FrameCloseReason};
/// use ringloop::CloseReason;
///
/// fn describe(reason: FrameCloseReason<'_>) -> String {
///     match reason {
///         FrameCloseReason::Codec(CodecError::FrameTooLong { length, .. }) => {
///             format!("peer announced {length} bytes")
///         }
///         other => other.to_string(),
///     }
/// }
/// assert_eq!(describe(FrameCloseReason::Conn(&CloseReason::Eof)), "closed by peer");
/// ```
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum FrameCloseReason<'r> {
    /// The connection closed for an ordinary reason (the peer, a socket
    /// error, this side, the engine stopping).
    Conn(&'r CloseReason),
    /// The codec refused the peer's bytes; the connection was closed for it.
    Codec(&'r CodecError),
}

impl fmt::Display for FrameCloseReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conn(reason) => fmt::Display::fmt(reason, f),
            Self::Codec(error) => write!(f, "codec error: {error}"),
        }
    }
}

/// The callbacks of a server speaking frames. Like
/// [`EventHandler`](crate::EventHandler), but traffic arrives as whole frames
/// through [`on_frame`](Self::on_frame) and the connection is a
/// [`FrameConn`] (a [`Conn`] that writes frames). Every other method has
/// the same default as `EventHandler`'s: nothing, except that
/// [`on_read_closed`](Self::on_read_closed) closes. Run it with [`Framed`].
///
/// ```
/// use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandler};
/// use ringloop::Action;
///
/// /// Counts frames per connection; replies with the count on "count".
/// struct Counter;
///
/// impl FrameHandler for Counter {
///     type State = u64;
///
///     fn on_open(&mut self, conn: &mut FrameConn<'_, u64>) -> Action {
///         conn.set_state(0);
///         Action::None
///     }
///
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, u64>, frame: &[u8]) -> Action {
///         let count = conn.state_mut().map(|n| { *n += 1; *n }).unwrap_or(0);
///         if frame == b"count" && conn.write_frame(count.to_string().as_bytes()).is_err() {
///             return Action::Close;
///         }
///         Action::None
///     }
///
///     fn on_close(&mut self, _conn: &mut FrameConn<'_, u64>, reason: FrameCloseReason<'_>) -> Action {
///         if let FrameCloseReason::Codec(e) = reason {
///             eprintln!("dropped a peer: {e}");
///         }
///         Action::None
///     }
/// }
/// ```
pub trait FrameHandler: 'static {
    /// Per-connection state, reached with [`FrameConn::state`] and friends.
    /// Use `()` when you need none.
    type State: 'static;

    /// The loop has started (see [`EventHandler::on_boot`](crate::EventHandler::on_boot)).
    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }

    /// A connection opened: accepted, dialled ([`FrameConn::dial`],
    /// [`EngineHandle::dial`](crate::EngineHandle::dial)) or enrolled. Frames written
    /// here (a greeting) go out before anything else.
    fn on_open(&mut self, conn: &mut FrameConn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// A whole frame arrived. `frame` borrows the loop's buffer (zero
    /// copy), so it can be written straight back. Frames of one read are
    /// delivered in order, one call each; returning anything but
    /// [`Action::None`] (or calling [`FrameConn::close`]) stops the delivery
    /// of the frames after this one.
    fn on_frame(&mut self, conn: &mut FrameConn<'_, Self::State>, frame: &[u8]) -> Action;

    /// The connection was woken through
    /// [`ConnHandle::wake`](crate::ConnHandle::wake): exactly once per
    /// wake, never for arriving bytes (see
    /// [`EventHandler::on_wake`](crate::EventHandler::on_wake) for the
    /// ordering rules). Whole frames already waiting (say, held while
    /// reading was paused) are delivered to [`on_frame`](Self::on_frame)
    /// right after it if it returns [`Action::None`]. The default does
    /// nothing.
    ///
    /// ```
    /// use ringloop::codec::{FrameConn, FrameHandler};
    /// use ringloop::Action;
    ///
    /// /// Answers each frame from a worker thread, via the loop.
    /// struct Deferred;
    /// impl FrameHandler for Deferred {
    ///     type State = Vec<Vec<u8>>; // replies ready to send
    ///     fn on_frame(&mut self, conn: &mut FrameConn<'_, Self::State>, frame: &[u8]) -> Action {
    ///         if let Some(ready) = conn.state_mut() {
    ///             ready.push(frame.to_vec()); // a real server would hand off work here
    ///         }
    ///         let handle = conn.handle();
    ///         std::thread::spawn(move || { let _ = handle.wake(); });
    ///         Action::None
    ///     }
    ///     fn on_wake(&mut self, conn: &mut FrameConn<'_, Self::State>) -> Action {
    ///         for reply in conn.take_state().unwrap_or_default() {
    ///             let _ = conn.write_frame(&reply);
    ///         }
    ///         conn.set_state(Vec::new());
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_wake(&mut self, conn: &mut FrameConn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::None
    }

    /// The connection is closing; runs exactly once per connection. A codec
    /// error comes as [`FrameCloseReason::Codec`]. Frames written here are
    /// flushed best-effort; [`Conn::inbound_buffered`] tells how many
    /// bytes of an incomplete frame are lost.
    fn on_close(
        &mut self,
        conn: &mut FrameConn<'_, Self::State>,
        reason: FrameCloseReason<'_>,
    ) -> Action {
        let _ = (conn, reason);
        Action::None
    }

    /// The ticker fired (see [`EventHandler::on_tick`](crate::EventHandler::on_tick)).
    fn on_tick(&mut self, ctx: &mut LoopContext) -> (std::time::Duration, Action) {
        let _ = ctx;
        (std::time::Duration::from_secs(1), Action::None)
    }

    /// The engine is stopping (see [`EventHandler::on_shutdown`](crate::EventHandler::on_shutdown)).
    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        let _ = ctx;
    }

    /// The peer closed its side (end of stream) and every whole frame it
    /// sent has been delivered; the bytes of an incomplete last frame, if
    /// any, are still unread ([`Conn::inbound_buffered`], and readable raw
    /// with [`Conn::read_all`] through the [`FrameConn`]). Return
    /// [`Action::Close`] (the default) to close once what is queued is
    /// written, or [`Action::None`] to keep the connection half-open and
    /// go on writing frames (see
    /// [`EventHandler::on_read_closed`](crate::EventHandler::on_read_closed)).
    ///
    /// ```
    /// use ringloop::codec::{FrameConn, FrameHandler};
    /// use ringloop::Action;
    ///
    /// /// Counts lines until the peer's FIN, then answers with the count.
    /// struct Count;
    /// impl FrameHandler for Count {
    ///     type State = u64;
    ///     fn on_frame(&mut self, conn: &mut FrameConn<'_, u64>, _line: &[u8]) -> Action {
    ///         let n = conn.state().copied().unwrap_or(0);
    ///         conn.set_state(n + 1);
    ///         Action::None
    ///     }
    ///     fn on_read_closed(&mut self, conn: &mut FrameConn<'_, u64>) -> Action {
    ///         let n = conn.state().copied().unwrap_or(0);
    ///         let _ = conn.write_frame(format!("{n} lines").as_bytes());
    ///         if conn.inbound_buffered() > 0 {
    ///             let rest = conn.read_all(); // a last line without its '\n'
    ///             let _ = conn.write_frame(&[&b"and: "[..], rest].concat());
    ///         }
    ///         Action::Close // after the replies are written
    ///     }
    /// }
    /// ```
    fn on_read_closed(&mut self, conn: &mut FrameConn<'_, Self::State>) -> Action {
        let _ = conn;
        Action::Close
    }

    /// A dial made from a callback with [`FrameConn::dial`] failed
    /// (refused, unreachable, timed out, a refused TLS certificate);
    /// `state` is the state given to it (see
    /// [`EventHandler::on_dial_error`](crate::EventHandler::on_dial_error)).
    ///
    /// ```
    /// use ringloop::codec::{FrameConn, FrameHandler};
    /// use ringloop::{Action, ConnId, LoopContext};
    ///
    /// /// A line gateway: each client gets a backend; the client's id is
    /// /// the backend dial's state.
    /// struct Gateway;
    /// impl FrameHandler for Gateway {
    ///     type State = Option<ConnId>;
    ///     fn on_open(&mut self, conn: &mut FrameConn<'_, Self::State>) -> Action {
    ///         if conn.listener_index().is_some() {
    ///             let client = conn.id();
    ///             let _ = conn.dial("tcp://127.0.0.1:7000", Some(client));
    ///         }
    ///         Action::None
    ///     }
    ///     fn on_frame(&mut self, _: &mut FrameConn<'_, Self::State>, _: &[u8]) -> Action {
    ///         Action::None
    ///     }
    ///     fn on_dial_error(
    ///         &mut self,
    ///         ctx: &mut LoopContext,
    ///         state: Self::State,
    ///         error: &ringloop::Error,
    ///     ) -> Action {
    ///         if let Some(client) = state {
    ///             let handle = ctx.engine().handle(client);
    ///             let _ = handle.async_write(format!("backend down: {error}\n"), |_| {});
    ///             let _ = handle.close();
    ///         }
    ///         Action::None
    ///     }
    /// }
    /// ```
    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Self::State,
        error: &crate::Error,
    ) -> Action {
        let _ = (ctx, state, error);
        Action::None
    }

    /// A `tls://` connection closed before its handshake finished (see
    /// [`EventHandler::on_handshake_error`](crate::EventHandler::on_handshake_error)).
    fn on_handshake_error(
        &mut self,
        ctx: &mut LoopContext,
        peer: &SockAddr,
        reason: &CloseReason,
    ) -> Action {
        let _ = (ctx, peer, reason);
        Action::None
    }

    /// An accepted connection was refused before it opened (see
    /// [`EventHandler::on_reject`](crate::EventHandler::on_reject)). The
    /// default logs it at debug level.
    fn on_reject(&mut self, ctx: &mut LoopContext, peer: &SockAddr, reason: &CloseReason) {
        log::debug!("loop {}: refused {peer}: {reason}", ctx.loop_index());
    }

    /// The engine handed its listeners to a new process (see
    /// [`EventHandler::on_drain`](crate::EventHandler::on_drain)).
    fn on_drain(&mut self, ctx: &mut LoopContext) -> Action {
        let _ = ctx;
        Action::None
    }
}

/// What [`Framed`] keeps in each connection's state: the handler's state,
/// the codec error that is closing the connection, if any, and where the
/// delivery of frames stands. (The connection's own copy of the codec is
/// kept by [`Framed`] beside it.) Reached by handlers only through
/// [`FrameConn`]; it appears in user code only as the
/// [`EventHandler::State`] of a [`Framed`].
///
/// ```
/// use ringloop::codec::{FrameConn, FrameHandler, Framed, FramedState, LineCodec};
/// use ringloop::{Action, EventHandler};
///
/// struct Sink;
/// impl FrameHandler for Sink {
///     type State = u32;
///     fn on_frame(&mut self, _: &mut FrameConn<'_, u32>, _: &[u8]) -> Action { Action::None }
/// }
/// fn state_of<H: EventHandler>(_: &H) -> &'static str { std::any::type_name::<H::State>() }
/// let framed = Framed::new(LineCodec::new(), Sink);
/// assert!(state_of(&framed).contains("FramedState"));
/// # let _: Option<FramedState<u32>> = None;
/// ```
pub struct FramedState<S> {
    pub(super) user: Option<S>,
    pub(super) error: Option<CodecError>,
    /// The handler closed the connection: deliver no more frames.
    pub(super) closing: bool,
}

impl<S> FramedState<S> {
    pub(super) fn new(user: Option<S>) -> Self {
        Self {
            user,
            error: None,
            closing: false,
        }
    }
}

impl<S> fmt::Debug for FramedState<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedState")
            .field("has_state", &self.user.is_some())
            .field("error", &self.error)
            .field("closing", &self.closing)
            .finish_non_exhaustive()
    }
}

/// Each connection's own copy of the codec (decoders remember how far they
/// searched), by slot: kept beside the connection's state rather than in
/// it, so that [`FramedState`] and [`FrameConn`] need not name the codec's
/// type while decoding stays statically dispatched.
struct Codecs<C> {
    prototype: C,
    by_slot: Vec<Option<C>>,
}

impl<C: Clone> Codecs<C> {
    /// The copy for the connection in `slot`, made if missing.
    fn of(&mut self, slot: u32) -> &mut C {
        let prototype = &self.prototype;
        let index = slot as usize;
        if index >= self.by_slot.len() {
            self.by_slot.resize_with(index + 1, || None);
        }
        self.by_slot[index].get_or_insert_with(|| prototype.clone())
    }

    /// Forgets the copy of `slot` (a connection that opened or closed):
    /// the next use starts from the prototype.
    fn reset(&mut self, slot: u32) {
        if let Some(copy) = self.by_slot.get_mut(slot as usize) {
            *copy = None;
        }
    }
}

/// Runs a [`FrameHandler`] as an [`EventHandler`]: decodes each
/// connection's bytes with its own clone of the codec, calls
/// [`on_frame`](FrameHandler::on_frame) once per whole frame, encodes what
/// the handler writes, and closes a connection whose bytes the codec
/// refuses (the error reaches [`on_close`](FrameHandler::on_close)).
///
/// Frames written during one callback are encoded into one buffer and
/// written together at its end (or whenever 64 KiB have accumulated), so a
/// read carrying many requests is answered with one `write`. Other threads
/// send frames through a [`FrameHandle`](super::FrameHandle)
/// ([`FrameConn::frame_handle`]).
///
/// Frames live in streams: an engine with a `Framed` handler serves
/// `tcp://`, `unix://` and their TLS forms, and
/// [`build`](crate::EngineBuilder::build) refuses a `udp://` listen address
/// with [`Error::InvalidConfig`](crate::Error::InvalidConfig) rather than
/// drop its datagrams (serve UDP with an
/// [`EventHandler::on_datagram`](crate::EventHandler::on_datagram)). A
/// dialled `udp://` address is a connected socket, a stream of datagrams
/// like any connection, and is decoded as frames.
///
/// While the handler has paused reading ([`Conn::pause_reading`], reached
/// through [`FrameConn`]), no further frame is delivered, even one already
/// received: the rest wait, decoded lazily, until reading resumes. That is
/// how a handler caps the work in flight per connection.
///
/// A user-defined codec that waits for more bytes while the maximum frame
/// length is already buffered is cut off with [`CodecError::BufferLimit`].
///
/// ```
/// use ringloop::codec::{FrameConn, FrameHandler, Framed, LineCodec};
/// use ringloop::{Action, Engine};
///
/// struct Upper;
/// impl FrameHandler for Upper {
///     type State = ();
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, line: &[u8]) -> Action {
///         let _ = conn.write_frame(&line.to_ascii_uppercase());
///         Action::None
///     }
/// }
///
/// let server = Engine::builder(|_| Framed::new(LineCodec::new(), Upper))
///     .listen("tcp://127.0.0.1:0")
///     .build()?;
/// # Ok::<(), ringloop::Error>(())
/// ```
pub struct Framed<C, H> {
    codecs: Codecs<C>,
    handler: H,
    out: Vec<u8>,
    /// What this loop's frame handles encode with.
    encoder: Arc<dyn FrameEncoder>,
}

impl<C, H> Framed<C, H>
where
    C: Codec + Clone + Send + Sync + 'static,
{
    /// Wraps `handler`; every connection gets a clone of `codec`.
    ///
    /// ```
    /// use ringloop::codec::{FrameConn, FrameHandler, Framed, FixedLengthCodec};
    /// use ringloop::Action;
    ///
    /// struct Sink;
    /// impl FrameHandler for Sink {
    ///     type State = ();
    ///     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// }
    /// let framed = Framed::new(FixedLengthCodec::new(16)?, Sink);
    /// # Ok::<(), ringloop::codec::ConfigError>(())
    /// ```
    pub fn new(codec: C, handler: H) -> Self {
        Self {
            encoder: Arc::new(Prototype(codec.clone())),
            codecs: Codecs {
                prototype: codec,
                by_slot: Vec::new(),
            },
            handler,
            out: Vec::new(),
        }
    }
}

impl<C, H> Framed<C, H> {
    /// The wrapped handler.
    ///
    /// ```
    /// use ringloop::codec::{FrameConn, FrameHandler, Framed, LineCodec};
    /// use ringloop::Action;
    ///
    /// struct Named(&'static str);
    /// impl FrameHandler for Named {
    ///     type State = ();
    ///     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// }
    /// let mut framed = Framed::new(LineCodec::new(), Named("a"));
    /// framed.handler_mut().0 = "b";
    /// assert_eq!(framed.handler().0, "b");
    /// ```
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The wrapped handler, mutably (see [`handler`](Self::handler)).
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// The codec every new connection gets a clone of.
    ///
    /// ```
    /// # use ringloop::codec::{Codec, FrameConn, FrameHandler, Framed, LineCodec};
    /// # use ringloop::Action;
    /// # struct Sink;
    /// # impl FrameHandler for Sink {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// # }
    /// let framed = Framed::new(LineCodec::new(), Sink);
    /// assert_eq!(framed.codec().max_frame_length(), 64 * 1024);
    /// ```
    pub fn codec(&self) -> &C {
        &self.codecs.prototype
    }
}

impl<C, H> fmt::Debug for Framed<C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framed")
            .field("codec", &std::any::type_name::<C>())
            .field("handler", &std::any::type_name::<H>())
            .finish_non_exhaustive()
    }
}

type StateOf<H> = FramedState<<H as FrameHandler>::State>;

impl<C, H> Framed<C, H>
where
    C: Codec + Clone + 'static,
    H: FrameHandler,
{
    /// Decodes and delivers every whole frame in the read view, then writes
    /// what the handler encoded.
    fn deliver(&mut self, conn: &mut Conn<'_, StateOf<H>>) -> Action {
        let slot = conn.slot();
        let action = loop {
            let input = conn.peek(usize::MAX);
            if input.is_empty() {
                break Action::None;
            }
            match conn.state() {
                Some(state) if !state.closing && state.error.is_none() => {}
                _ => break Action::None,
            }
            if conn.is_reading_paused() {
                break Action::None; // held until reading resumes
            }
            let codec = self.codecs.of(slot);
            let max = codec.max_frame_length();
            let frame = match codec.decode(input) {
                Ok(Some(frame)) => frame,
                Ok(None) if input.len() < max => break Action::None,
                Ok(None) => {
                    let buffered = input.len();
                    break fail(conn, CodecError::BufferLimit { buffered, max });
                }
                Err(e) => break fail(conn, e),
            };
            if frame.consumed == 0 || frame.consumed > input.len() {
                let what = if frame.consumed == 0 {
                    "a frame consumed no input"
                } else {
                    "a frame consumed more input than given"
                };
                break fail(conn, CodecError::Misbehaved(what));
            }
            if frame.consumed > max || frame.data.len() > max {
                let length = frame.consumed.max(frame.data.len()) as u64;
                break fail(conn, CodecError::FrameTooLong { length, max });
            }
            conn.discard(frame.consumed);
            let action = self.call(conn, |h, c| h.on_frame(c, &frame.data));
            if action != Action::None {
                break action;
            }
        };
        // A failed write has already doomed the connection: the loop closes
        // it with the socket's error after this callback.
        let _ = write_out(conn, &mut self.out);
        action
    }

    /// Runs `f` with a [`FrameConn`] over `conn`; what it encodes stays in
    /// the output buffer.
    fn call<R>(
        &mut self,
        conn: &mut Conn<'_, StateOf<H>>,
        f: impl FnOnce(&mut H, &mut FrameConn<'_, H::State>) -> R,
    ) -> R {
        let codec: &mut dyn Codec = self.codecs.of(conn.slot());
        let mut frame_conn = FrameConn::new(conn.reborrow(), &mut self.out, codec, &self.encoder);
        let result = f(&mut self.handler, &mut frame_conn);
        let back = frame_conn.into_conn().into_reborrowed();
        conn.end_reborrow(back);
        result
    }

    /// [`call`](Self::call), then writes what it encoded.
    fn call_and_write<R>(
        &mut self,
        conn: &mut Conn<'_, StateOf<H>>,
        f: impl FnOnce(&mut H, &mut FrameConn<'_, H::State>) -> R,
    ) -> R {
        let result = self.call(conn, f);
        let _ = write_out(conn, &mut self.out); // see `deliver`
        result
    }
}

/// Gives the connection its framing state if it has none yet (accepted
/// connections, and those dialled through the engine).
fn ensure_state<S>(conn: &mut Conn<'_, FramedState<S>>) {
    if conn.state().is_none() {
        conn.set_state(FramedState::new(None));
    }
}

/// Gives up on the stream: remembers why, drops the unread bytes, closes.
fn fail<S>(conn: &mut Conn<'_, FramedState<S>>, error: CodecError) -> Action {
    // The engine's close reason says it too (CloseReason::Protocol), for its
    // logs and counters; the frame handler gets the typed error.
    let message = error.to_string();
    if let Some(state) = conn.state_mut() {
        state.error.get_or_insert(error);
    }
    conn.read_all();
    conn.close_with_error(message);
    Action::None
}

impl<C, H> EventHandler for Framed<C, H>
where
    C: Codec + Clone + 'static,
    H: FrameHandler,
{
    type State = FramedState<H::State>;

    // Frames live in streams: an engine refuses to build a `udp://`
    // listener for a framed handler rather than drop its datagrams.
    const SERVES_DATAGRAMS: bool = false;

    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        self.handler.on_boot(ctx)
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        // A panic in an earlier callback may have left output behind.
        self.out.clear();
        ensure_state(conn);
        self.codecs.reset(conn.slot());
        self.call_and_write(conn, |h, c| h.on_open(c))
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.out.clear();
        ensure_state(conn);
        self.deliver(conn)
    }

    fn on_wake(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.out.clear();
        ensure_state(conn);
        let action = self.call_and_write(conn, |h, c| h.on_wake(c));
        if action == Action::None {
            // Frames left waiting (say, reading was paused) go on after it.
            self.deliver(conn)
        } else {
            action
        }
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.out.clear();
        ensure_state(conn);
        self.call_and_write(conn, |h, c| h.on_read_closed(c))
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        self.out.clear();
        let error = conn.state_mut().and_then(|s| s.error.take());
        let reason = match &error {
            Some(e) => FrameCloseReason::Codec(e),
            None => FrameCloseReason::Conn(reason),
        };
        let action = self.call_and_write(conn, |h, c| h.on_close(c, reason));
        self.codecs.reset(conn.slot());
        action
    }

    fn on_dial_error(
        &mut self,
        ctx: &mut LoopContext,
        state: Self::State,
        error: &crate::Error,
    ) -> Action {
        match state.user {
            Some(user) => self.handler.on_dial_error(ctx, user, error),
            None => Action::None,
        }
    }

    fn on_handshake_error(
        &mut self,
        ctx: &mut LoopContext,
        peer: &SockAddr,
        reason: &CloseReason,
    ) -> Action {
        self.handler.on_handshake_error(ctx, peer, reason)
    }

    fn on_tick(&mut self, ctx: &mut LoopContext) -> (std::time::Duration, Action) {
        self.handler.on_tick(ctx)
    }

    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        self.handler.on_shutdown(ctx)
    }

    fn on_reject(&mut self, ctx: &mut LoopContext, peer: &SockAddr, reason: &CloseReason) {
        self.handler.on_reject(ctx, peer, reason)
    }

    fn on_drain(&mut self, ctx: &mut LoopContext) -> Action {
        self.handler.on_drain(ctx)
    }
}
