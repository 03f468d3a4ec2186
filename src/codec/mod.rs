//! Framing codecs: turn a connection's byte stream into whole frames and
//! back, safely against hostile peers.
//!
//! Owns the [`Codec`] trait, the built-in codecs ([`LineCodec`],
//! [`DelimiterCodec`], [`FixedLengthCodec`], [`LengthFieldCodec`]) and
//! [`Framed`], the adapter that runs a [`FrameHandler`] on a server so that
//! it receives whole frames one at a time, [`FrameConn`] (a connection that
//! writes frames) and [`FrameHandle`] (other threads send frames through
//! the connection's codec). It builds on the [`Conn`](crate::Conn) read
//! view and write path and on [`ConnHandle`](crate::ConnHandle); it never
//! touches a socket.
//!
//! # Zero copy
//!
//! In [`EventHandler::on_traffic`](crate::EventHandler::on_traffic) the loop
//! shows a connection's unread bytes (leftover plus fresh) as one slice and
//! keeps whatever the callback leaves unconsumed. A codec decodes from that
//! slice and returns each frame as a sub-slice of it, so a frame that
//! arrived whole is never copied; an incomplete frame is left where it is
//! and is copied only as the loop already does for any unconsumed bytes.
//!
//! # Hostile input
//!
//! Every codec has a maximum frame length: the most bytes one frame may
//! take on the wire, header or delimiter included. A frame announced longer
//! (checked as soon as a length field is read, before any of its body is
//! buffered), a delimiter not found within the maximum, or a length field
//! that makes no sense is a typed [`CodecError`]; [`Framed`] closes that
//! connection and reports the error to
//! [`FrameHandler::on_close`] as [`FrameCloseReason::Codec`]. So a connection
//! never holds more than the maximum in unconsumed bytes (plus the one read
//! that revealed the problem). Defaults: [`DEFAULT_MAX_LINE_LENGTH`] (64 KiB)
//! for the text codecs, [`DEFAULT_MAX_FRAME_LENGTH`] (8 MiB) for the binary
//! ones and for user-defined codecs.
//!
//! Settings that cannot work (a length field of 5 bytes, stripping beyond
//! the header, a zero maximum, an empty delimiter, …) are refused by the
//! codec's `build` with a [`ConfigError`].
//!
//! # A framed connection is a whole connection
//!
//! A [`FrameHandler`] sees each connection as a [`FrameConn`]: a
//! [`Conn`](crate::Conn) (reached through `Deref`: id, engine, dial, link,
//! half-close, pause and resume, addresses, TLS details) whose writes go
//! through the codec, in order with any raw bytes it writes. Other threads
//! (worker-pool jobs, broadcasters) send frames through a [`FrameHandle`],
//! which encodes them on the sending thread with the connection's codec;
//! its docs say why there and what that keeps (order, back-pressure,
//! errors).
//!
//! # Example
//!
//! An echo server speaking length-prefixed frames, and a client:
//!
//! ```
//! use std::io::{Read, Write};
//! use ringloop::codec::{FrameConn, FrameHandler, Framed, LengthFieldCodec};
//! use ringloop::{Action, Engine};
//!
//! struct Echo;
//!
//! impl FrameHandler for Echo {
//!     type State = ();
//!     fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
//!         match conn.write_frame(frame) {
//!             Ok(()) => Action::None,
//!             Err(_) => Action::Close,
//!         }
//!     }
//! }
//!
//! // 4-byte big-endian length, then the payload.
//! let codec = LengthFieldCodec::builder().length_field_length(4).build()?;
//! let server = Engine::builder(move |_| Framed::new(codec.clone(), Echo))
//!     .listen("tcp://127.0.0.1:0")
//!     .loops(1)
//!     .build()?;
//! let engine = server.handle();
//! let addr = engine.local_addrs()[0].sock_addr().as_inet().unwrap();
//! let runner = std::thread::spawn(move || server.run());
//!
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"\0\0\0\x05hello\0\0\0\x02hi")?;
//! let mut back = [0u8; 15];
//! client.read_exact(&mut back)?;
//! assert_eq!(&back, b"\0\0\0\x05hello\0\0\0\x02hi");
//!
//! engine.stop();
//! runner.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

use std::borrow::Cow;

mod delimiter;
mod error;
mod fixed;
mod frame_conn;
mod frame_handle;
mod framed;
mod length_field;
mod line;

pub use delimiter::{DelimiterCodec, DelimiterCodecBuilder};
pub use error::{CodecError, ConfigError};
pub use fixed::{FixedLengthCodec, FixedLengthCodecBuilder};
pub use frame_conn::FrameConn;
pub use frame_handle::FrameHandle;
pub use framed::{FrameCloseReason, FrameHandler, Framed, FramedState};
pub use length_field::{ByteOrder, LengthFieldCodec, LengthFieldCodecBuilder};
pub use line::{LineCodec, LineCodecBuilder};

/// Default maximum frame length of the text codecs ([`LineCodec`],
/// [`DelimiterCodec`]): 64 KiB, delimiter included. Text protocols have
/// short lines, and a peer that never sends a delimiter makes a connection
/// buffer up to this much before it is refused.
///
/// ```
/// use ringloop::codec::{Codec, LineCodec, DEFAULT_MAX_LINE_LENGTH};
/// assert_eq!(LineCodec::new().max_frame_length(), DEFAULT_MAX_LINE_LENGTH);
/// ```
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// Default maximum frame length of the binary codecs ([`LengthFieldCodec`],
/// [`FixedLengthCodec`]) and of user-defined codecs: 8 MiB, header included.
/// Large enough for bulk payloads, small enough that a few thousand
/// connections announcing maximal frames do not exhaust memory.
///
/// ```
/// use ringloop::codec::{Codec, LengthFieldCodec, DEFAULT_MAX_FRAME_LENGTH};
/// assert_eq!(LengthFieldCodec::default().max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
/// ```
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 8 * 1024 * 1024;

/// One decoded frame: its bytes and how many input bytes it took.
///
/// `data` borrows the input when the frame's bytes are there as they are
/// (every built-in codec); a user-defined codec that has to transform them
/// (unescape, decompress) returns them owned.
///
/// ```
/// use ringloop::codec::Frame;
/// let input = b"hello\nrest";
/// let frame = Frame::borrowed(&input[..5], 6); // the line, and its '\n'
/// assert_eq!(&*frame.data, b"hello");
/// assert_eq!(frame.consumed, 6);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The frame's bytes (header or delimiter stripped as configured).
    pub data: Cow<'a, [u8]>,
    /// Input bytes the frame took, header and delimiter included; at least 1
    /// and at most the input's length.
    pub consumed: usize,
}

impl<'a> Frame<'a> {
    /// A frame that is a slice of the input (zero copy).
    ///
    /// ```
    /// use ringloop::codec::Frame;
    /// let frame = Frame::borrowed(b"abc", 4);
    /// assert!(matches!(frame.data, std::borrow::Cow::Borrowed(_)));
    /// ```
    pub fn borrowed(data: &'a [u8], consumed: usize) -> Self {
        Self {
            data: Cow::Borrowed(data),
            consumed,
        }
    }

    /// A frame whose bytes the codec produced itself.
    ///
    /// ```
    /// use ringloop::codec::Frame;
    /// let frame = Frame::owned(vec![1, 2, 3], 5);
    /// assert_eq!(&*frame.data, &[1, 2, 3]);
    /// ```
    pub fn owned(data: Vec<u8>, consumed: usize) -> Self {
        Self {
            data: Cow::Owned(data),
            consumed,
        }
    }
}

/// A framing codec: splits a byte stream into frames and encodes frames
/// into bytes.
///
/// # Contract of `decode`
///
/// `src` holds the connection's unconsumed bytes, starting with the first
/// byte of the next frame. Return:
/// - `Ok(Some(frame))` with `frame.consumed` in `1..=src.len()` for a whole
///   frame; the caller drops those bytes and calls again with the rest;
/// - `Ok(None)` when `src` holds no whole frame yet; the next call's `src`
///   begins with the same bytes, with more appended. A codec may remember
///   how far it already searched (every delimiter codec does, so a long
///   frame arriving in small pieces is scanned once, not once per piece);
/// - `Err(_)` when the bytes can never form a valid frame. The caller gives
///   up on the stream ([`Framed`] closes the connection).
///
/// A codec must never return `Ok(None)` while `src` holds
/// [`max_frame_length`](Codec::max_frame_length) bytes or more, and never
/// return a frame consuming more than that or holding more bytes than that:
/// [`Framed`] enforces both ([`CodecError::BufferLimit`],
/// [`CodecError::FrameTooLong`]), so even a careless codec cannot make a
/// connection buffer (or inflate a frame) without bound.
///
/// # Contract of `encode`
///
/// Append the frame's bytes to `dst`. On error, leave `dst` as it was.
///
/// # Example: a user-defined codec
///
/// Frames of the form `<decimal length>:<bytes>` (a netstring without the
/// trailing comma):
///
/// ```
/// use ringloop::codec::{Codec, CodecError, Frame};
///
/// #[derive(Clone)]
/// struct Netstring;
///
/// impl Codec for Netstring {
///     fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
///         let Some(colon) = src.iter().take(8).position(|&b| b == b':') else {
///             return if src.len() >= 8 { Err(CodecError::custom("no ':'")) } else { Ok(None) };
///         };
///         let len: usize = std::str::from_utf8(&src[..colon])
///             .ok()
///             .and_then(|s| s.parse().ok())
///             .ok_or_else(|| CodecError::custom("bad length"))?;
///         let end = colon + 1 + len;
///         if end > self.max_frame_length() {
///             return Err(CodecError::FrameTooLong { length: end as u64, max: self.max_frame_length() });
///         }
///         Ok(src.get(colon + 1..end).map(|frame| Frame::borrowed(frame, end)))
///     }
///
///     fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
///         dst.extend_from_slice(format!("{}:", frame.len()).as_bytes());
///         dst.extend_from_slice(frame);
///         Ok(())
///     }
///
///     fn max_frame_length(&self) -> usize {
///         1 << 20
///     }
/// }
///
/// let mut codec = Netstring;
/// let mut wire = Vec::new();
/// codec.encode(b"hello", &mut wire)?;
/// assert_eq!(wire, b"5:hello");
/// let frame = codec.decode(&wire)?.unwrap();
/// assert_eq!((&*frame.data, frame.consumed), (&b"hello"[..], 7));
/// assert!(codec.decode(b"5:hel")?.is_none()); // waits for more
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec {
    /// Decodes the next frame from `src` (see the trait's contract).
    ///
    /// ```
    /// use ringloop::codec::{Codec, FixedLengthCodec};
    /// let mut codec = FixedLengthCodec::new(2)?;
    /// let mut src: &[u8] = b"abcde";
    /// let mut frames = Vec::new();
    /// while let Some(frame) = codec.decode(src)? {
    ///     frames.push(frame.data);
    ///     src = &src[frame.consumed..];
    /// }
    /// assert_eq!(frames, [&b"ab"[..], b"cd"]);
    /// assert_eq!(src, b"e"); // kept for the next read
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError>;

    /// Appends `frame`, encoded, to `dst` (see the trait's contract).
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// let mut codec = LineCodec::new();
    /// let mut dst = Vec::new();
    /// codec.encode(b"one", &mut dst)?;
    /// codec.encode(b"two", &mut dst)?;
    /// assert_eq!(dst, b"one\ntwo\n");
    /// assert!(codec.encode(b"a\nb", &mut dst).is_err()); // dst unchanged
    /// assert_eq!(dst.len(), 8);
    /// # Ok::<(), ringloop::codec::CodecError>(())
    /// ```
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError>;

    /// The most bytes one frame may take on the wire, header or delimiter
    /// included. Defaults to [`DEFAULT_MAX_FRAME_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// let codec = LineCodec::builder().max_frame_length(80).build()?;
    /// assert_eq!(codec.max_frame_length(), 80);
    /// # Ok::<(), ringloop::codec::ConfigError>(())
    /// ```
    fn max_frame_length(&self) -> usize {
        DEFAULT_MAX_FRAME_LENGTH
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Drives a codec the way the event loop and `Framed` do, over chunks.

    use super::{Codec, CodecError};

    /// What decoding a stream gave: the frames, then the error if any.
    pub(crate) type Outcome = (Vec<Vec<u8>>, Option<String>);

    /// Feeds `chunks` one read at a time, keeping unconsumed bytes as the
    /// loop does; stops at the first error. Also checks the invariants every
    /// built-in codec keeps: frames within the maximum, and never waiting
    /// with the maximum already buffered.
    pub(crate) fn drive<C: Codec>(codec: &mut C, chunks: &[&[u8]]) -> Outcome {
        let max = codec.max_frame_length();
        let mut frames = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            let mut pos = 0;
            loop {
                match codec.decode(&buf[pos..]) {
                    Ok(Some(frame)) => {
                        assert!(frame.consumed >= 1 && frame.consumed <= buf.len() - pos);
                        assert!(frame.consumed <= max && frame.data.len() <= max);
                        frames.push(frame.data.into_owned());
                        pos += frame.consumed;
                    }
                    Ok(None) => {
                        assert!(buf.len() - pos < max, "waits with the maximum buffered");
                        break;
                    }
                    Err(e) => return (frames, Some(describe(&e))),
                }
            }
            buf.drain(..pos);
        }
        (frames, None)
    }

    fn describe(e: &CodecError) -> String {
        format!("{e:?}")
    }

    /// Decodes `bytes` split at every single boundary (two reads) and as
    /// one read per byte; every outcome must equal the one-read outcome.
    pub(crate) fn assert_split_invariant<C: Codec + Clone>(codec: &C, bytes: &[u8]) -> Outcome {
        let whole = drive(&mut codec.clone(), &[bytes]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(
                drive(&mut codec.clone(), &[a, b]),
                whole,
                "split at {cut} of {bytes:?}"
            );
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(drive(&mut codec.clone(), &bytewise), whole, "byte by byte");
        whole
    }
}
