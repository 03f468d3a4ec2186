//! [`Framed`]: runs a [`FrameHandler`] on a server through a [`Codec`], so
//! the handler receives whole frames one at a time and writes frames.
//!
//! Owns the decode loop over a connection's read view, the per-connection
//! codec copy ([`FramedState`]), the coalescing of encoded output within one
//! callback, and turning a codec error into a closed connection whose
//! reason reaches [`FrameHandler::on_close`]. It uses only the public
//! [`Conn`] API.
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

use super::{Codec, CodecError};
use crate::{Action, CloseReason, Conn, ConnHandle, EventHandler, LoopContext, SockAddr};

/// Encoded output is written to the connection once it reaches this size,
/// and at the end of every callback.
const FLUSH_AT: usize = 64 * 1024;
/// The output buffer is shrunk back when a large frame grew it past this.
const KEEP_CAPACITY: usize = 1024 * 1024;

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
/// through [`on_frame`](Self::on_frame); every other method has a default
/// that does nothing. Run it with [`Framed`].
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

    /// A connection was accepted. Frames written here (a greeting) go out
    /// before anything else.
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
    /// [`ConnHandle::wake`](crate::ConnHandle::wake) without new bytes.
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
    /// flushed best-effort; [`FrameConn::inbound_buffered`] tells how many
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
}

/// What [`Framed`] keeps per connection: the connection's own copy of the
/// codec (decoders remember how far they searched), the handler's state,
/// and the codec error that is closing the connection, if any. Reached by
/// handlers only through [`FrameConn`]; it appears in user code only as
/// the [`EventHandler::State`] of a [`Framed`].
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
/// # let _: Option<FramedState<LineCodec, u32>> = None;
/// ```
pub struct FramedState<C, S> {
    codec: C,
    user: Option<S>,
    error: Option<CodecError>,
    /// The handler closed the connection: deliver no more frames.
    closing: bool,
    /// Bytes left unconsumed by the previous `on_traffic`.
    buffered: usize,
}

impl<C, S> fmt::Debug for FramedState<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FramedState")
            .field("has_state", &self.user.is_some())
            .field("error", &self.error)
            .field("closing", &self.closing)
            .field("buffered", &self.buffered)
            .finish_non_exhaustive()
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
/// read carrying many requests is answered with one `write`.
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
    codec: C,
    handler: H,
    out: Vec<u8>,
}

impl<C, H> Framed<C, H> {
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
            codec,
            handler,
            out: Vec::new(),
        }
    }

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
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler, Framed, LineCodec};
    /// # use ringloop::Action;
    /// # struct Named(&'static str);
    /// # impl FrameHandler for Named {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// # }
    /// let mut framed = Framed::new(LineCodec::new(), Named("a"));
    /// framed.handler_mut().0 = "b";
    /// ```
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
        &self.codec
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

type StateOf<C, H> = FramedState<C, <H as FrameHandler>::State>;

impl<C, H> Framed<C, H>
where
    C: Codec + Clone + 'static,
    H: FrameHandler,
{
    /// The connection's framing state, created if missing (only if a
    /// connection reached a callback before `on_open`, which the engine
    /// never does).
    fn ensure_state(&self, conn: &mut Conn<'_, StateOf<C, H>>) {
        if conn.state().is_none() {
            conn.set_state(FramedState {
                codec: self.codec.clone(),
                user: None,
                error: None,
                closing: false,
                buffered: 0,
            });
        }
    }

    /// Decodes and delivers every whole frame in the read view.
    fn deliver(&mut self, conn: &mut Conn<'_, StateOf<C, H>>) -> Action {
        loop {
            let input = conn.peek(usize::MAX);
            if input.is_empty() {
                return Action::None;
            }
            let Some(state) = conn.state_mut() else {
                return Action::None;
            };
            if state.closing || state.error.is_some() {
                return Action::None;
            }
            let max = state.codec.max_frame_length();
            let frame = match state.codec.decode(input) {
                Ok(Some(frame)) => frame,
                Ok(None) if input.len() < max => return Action::None,
                Ok(None) => {
                    return fail(
                        conn,
                        CodecError::BufferLimit {
                            buffered: input.len(),
                            max,
                        },
                    )
                }
                Err(e) => return fail(conn, e),
            };
            if frame.consumed == 0 || frame.consumed > input.len() {
                let what = if frame.consumed == 0 {
                    "a frame consumed no input"
                } else {
                    "a frame consumed more input than given"
                };
                return fail(conn, CodecError::Misbehaved(what));
            }
            if frame.consumed > max || frame.data.len() > max {
                let length = frame.consumed.max(frame.data.len());
                return fail(
                    conn,
                    CodecError::FrameTooLong {
                        length: length as u64,
                        max,
                    },
                );
            }
            conn.discard(frame.consumed);
            let action = {
                let mut link = Link {
                    conn,
                    out: &mut self.out,
                };
                self.handler
                    .on_frame(&mut FrameConn { io: &mut link }, &frame.data)
            };
            if action != Action::None {
                return action;
            }
        }
    }

    /// Writes what the callback encoded, and forgets it.
    fn write_out(&mut self, conn: &mut Conn<'_, StateOf<C, H>>) {
        let mut link = Link {
            conn,
            out: &mut self.out,
        };
        // A failed write has already doomed the connection: the loop closes
        // it with the socket's error after this callback.
        let _ = link.write_out();
    }

    /// Runs `f` with a [`FrameConn`], then writes what it encoded.
    fn with_frame_conn<R>(
        &mut self,
        conn: &mut Conn<'_, StateOf<C, H>>,
        f: impl FnOnce(&mut H, &mut FrameConn<'_, H::State>) -> R,
    ) -> R {
        let result = {
            let mut link = Link {
                conn: &mut *conn,
                out: &mut self.out,
            };
            f(&mut self.handler, &mut FrameConn { io: &mut link })
        };
        self.write_out(conn);
        result
    }
}

/// Gives up on the stream: remembers why, drops the unread bytes, closes.
fn fail<C, S>(conn: &mut Conn<'_, FramedState<C, S>>, error: CodecError) -> Action {
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
    type State = FramedState<C, H::State>;

    fn on_boot(&mut self, ctx: &mut LoopContext) -> Action {
        self.handler.on_boot(ctx)
    }

    fn on_open(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        // A panic in an earlier callback may have left output behind.
        self.out.clear();
        self.ensure_state(conn);
        self.with_frame_conn(conn, |h, c| h.on_open(c))
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Self::State>) -> Action {
        self.out.clear();
        self.ensure_state(conn);
        let buffered = conn.inbound_buffered();
        let woken = conn.state().is_some_and(|s| s.buffered == buffered);
        let action = if woken {
            self.with_frame_conn(conn, |h, c| h.on_wake(c))
        } else {
            let action = self.deliver(conn);
            self.write_out(conn);
            action
        };
        let left = conn.inbound_buffered();
        if let Some(state) = conn.state_mut() {
            state.buffered = left;
        }
        action
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Self::State>, reason: &CloseReason) -> Action {
        self.out.clear();
        let error = conn.state_mut().and_then(|s| s.error.take());
        let reason = match &error {
            Some(e) => FrameCloseReason::Codec(e),
            None => FrameCloseReason::Conn(reason),
        };
        self.with_frame_conn(conn, |h, c| h.on_close(c, reason))
    }

    fn on_tick(&mut self, ctx: &mut LoopContext) -> (std::time::Duration, Action) {
        self.handler.on_tick(ctx)
    }

    fn on_shutdown(&mut self, ctx: &mut LoopContext) {
        self.handler.on_shutdown(ctx)
    }
}

/// What a [`FrameConn`] needs from the connection and the codec, behind a
/// trait object so that handlers need not name the codec's type.
trait FrameIo<S> {
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), CodecError>;
    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), CodecError>;
    fn write_out(&mut self) -> Result<(), CodecError>;
    fn flush(&mut self) -> Result<(), CodecError>;
    fn pending(&self) -> usize;
    fn conn_outbound(&self) -> usize;
    fn inbound_buffered(&self) -> usize;
    fn close(&mut self);
    fn user(&self) -> Option<&S>;
    fn user_slot(&mut self) -> Option<&mut Option<S>>;
    fn handle(&self) -> ConnHandle;
    fn loop_index(&self) -> usize;
    fn listener_index(&self) -> Option<usize>;
    fn peer_addr(&self) -> &SockAddr;
    fn local_addr(&self) -> crate::Result<SockAddr>;
}

/// The connection and the loop's output buffer, for one callback.
struct Link<'c, 'a, C, S> {
    conn: &'c mut Conn<'a, FramedState<C, S>>,
    out: &'c mut Vec<u8>,
}

impl<C: Codec, S> FrameIo<S> for Link<'_, '_, C, S> {
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), CodecError> {
        let Some(state) = self.conn.state_mut() else {
            return Err(CodecError::Io(crate::Error::ConnectionClosed));
        };
        let start = self.out.len();
        if let Err(e) = state.codec.encode(frame, self.out) {
            self.out.truncate(start); // in case the codec did not
            return Err(e);
        }
        if self.out.len() >= FLUSH_AT {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), CodecError> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= FLUSH_AT {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), CodecError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.conn.write(self.out);
        self.out.clear();
        if self.out.capacity() > KEEP_CAPACITY {
            self.out.shrink_to(FLUSH_AT);
        }
        result.map(drop).map_err(CodecError::Io)
    }

    fn flush(&mut self) -> Result<(), CodecError> {
        self.write_out()?;
        self.conn.flush().map_err(CodecError::Io)
    }

    fn pending(&self) -> usize {
        self.out.len()
    }

    fn conn_outbound(&self) -> usize {
        self.conn.outbound_buffered()
    }

    fn inbound_buffered(&self) -> usize {
        self.conn.inbound_buffered()
    }

    fn close(&mut self) {
        if let Some(state) = self.conn.state_mut() {
            state.closing = true;
        }
        self.conn.close();
    }

    fn user(&self) -> Option<&S> {
        self.conn.state().and_then(|s| s.user.as_ref())
    }

    fn user_slot(&mut self) -> Option<&mut Option<S>> {
        self.conn.state_mut().map(|s| &mut s.user)
    }

    fn handle(&self) -> ConnHandle {
        self.conn.handle()
    }

    fn loop_index(&self) -> usize {
        self.conn.loop_index()
    }

    fn listener_index(&self) -> Option<usize> {
        self.conn.listener_index()
    }

    fn peer_addr(&self) -> &SockAddr {
        self.conn.peer_addr()
    }

    fn local_addr(&self) -> crate::Result<SockAddr> {
        self.conn.local_addr()
    }
}

/// A framed connection, inside a [`FrameHandler`] callback on the loop
/// that owns it. Frames written here go through the connection's codec.
///
/// `S` is the handler's [`State`](FrameHandler::State) type.
///
/// ```
/// use ringloop::codec::{FrameConn, FrameHandler};
/// use ringloop::Action;
///
/// struct Echo;
/// impl FrameHandler for Echo {
///     type State = ();
///     fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
///         match conn.write_frame(frame) {
///             Ok(()) => Action::None,
///             Err(_) => Action::Close,
///         }
///     }
/// }
/// ```
pub struct FrameConn<'c, S> {
    io: &'c mut (dyn FrameIo<S> + 'c),
}

impl<S> FrameConn<'_, S> {
    /// Encodes `frame` with the connection's codec and queues it; what a
    /// callback writes goes out in one write when it returns (or as soon as
    /// 64 KiB are queued). Fails if the codec refuses the frame (nothing is
    /// written then) or the connection is broken.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Echo;
    /// # impl FrameHandler for Echo {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if conn.write_frame(frame).is_err() {
    ///         return Action::Close;
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), CodecError> {
        self.io.write_frame(frame)
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
        self.io.write_raw(bytes)
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
        self.io.flush()
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
        self.io.pending() + self.io.conn_outbound()
    }

    /// Bytes received but not yet delivered as a frame (the start of an
    /// incomplete frame, or frames not delivered after a close).
    ///
    /// ```
    /// # use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Audit;
    /// # impl FrameHandler for Audit {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// fn on_close(&mut self, conn: &mut FrameConn<'_, ()>, _: FrameCloseReason<'_>) -> Action {
    ///     if conn.inbound_buffered() > 0 {
    ///         eprintln!("peer left in the middle of a frame");
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn inbound_buffered(&self) -> usize {
        self.io.inbound_buffered()
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
        self.io.close()
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
        self.io.user()
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
        self.io.user_slot().and_then(Option::as_mut)
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
        self.io.user_slot().and_then(|slot| slot.replace(state))
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
        self.io.user_slot().and_then(Option::take)
    }

    /// A `Send + Sync + Clone` handle to this connection, for other threads
    /// (see [`ConnHandle`]). Bytes sent through it bypass the codec: encode
    /// them first.
    ///
    /// ```
    /// # use ringloop::codec::{Codec, FrameConn, FrameHandler, LineCodec};
    /// # use ringloop::Action;
    /// # struct Later;
    /// # impl FrameHandler for Later {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, _frame: &[u8]) -> Action {
    ///     let handle = conn.handle();
    ///     std::thread::spawn(move || {
    ///         let mut reply = Vec::new();
    ///         if LineCodec::new().encode(b"done", &mut reply).is_ok() {
    ///             let _ = handle.async_write(reply, |_| {});
    ///         }
    ///     });
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn handle(&self) -> ConnHandle {
        self.io.handle()
    }

    /// Index of the loop that owns this connection.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Where;
    /// # impl FrameHandler for Where {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, _: &[u8]) -> Action {
    ///     let _ = conn.write_frame(format!("loop {}", conn.loop_index()).as_bytes());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn loop_index(&self) -> usize {
        self.io.loop_index()
    }

    /// Index (in the order given to the builder) of the listener that
    /// accepted this connection.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Admin;
    /// # impl FrameHandler for Admin {
    /// #     type State = ();
    /// fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
    ///     if frame == b"shutdown" && conn.listener_index() == Some(1) {
    ///         return Action::Shutdown; // only from the admin listener
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn listener_index(&self) -> Option<usize> {
        self.io.listener_index()
    }

    /// The peer's address.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Log;
    /// # impl FrameHandler for Log {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
    ///     println!("hello, {}", conn.peer_addr());
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn peer_addr(&self) -> &SockAddr {
        self.io.peer_addr()
    }

    /// This side's address.
    ///
    /// ```
    /// # use ringloop::codec::{FrameConn, FrameHandler};
    /// # use ringloop::Action;
    /// # struct Log;
    /// # impl FrameHandler for Log {
    /// #     type State = ();
    /// #     fn on_frame(&mut self, _: &mut FrameConn<'_, ()>, _: &[u8]) -> Action { Action::None }
    /// fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
    ///     if let Ok(local) = conn.local_addr() {
    ///         println!("accepted on {local}");
    ///     }
    ///     Action::None
    /// }
    /// # }
    /// ```
    pub fn local_addr(&self) -> crate::Result<SockAddr> {
        self.io.local_addr()
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
