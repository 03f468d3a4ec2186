//! The codecs' two error types: [`CodecError`] (bytes from the network or a
//! frame to send that the codec refuses) and [`ConfigError`] (a codec built
//! with settings that cannot work).
//!
//! Owns only the error vocabulary. A `CodecError` met while decoding closes
//! the connection it concerns and is handed to
//! [`FrameHandler::on_close`](super::FrameHandler::on_close); nothing else is
//! affected. A `ConfigError` is returned by a codec's `build` before anything
//! runs.

use std::fmt;

/// Why a codec refused bytes it was given to decode, or a frame it was
/// given to encode.
///
/// ```
/// use ringloop::codec::{Codec, CodecError, LengthFieldCodec};
///
/// let mut codec = LengthFieldCodec::builder().max_frame_length(1024).build()?;
/// // A peer announces a 4 GiB frame: refused as soon as the header is read.
/// let err = codec.decode(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
/// assert!(matches!(err, CodecError::FrameTooLong { max: 1024, .. }));
/// # Ok::<(), ringloop::codec::ConfigError>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CodecError {
    /// A frame is longer than the codec's maximum: announced so by a length
    /// field (decoding, before its body is read), or given so to the
    /// encoder. `length` is the frame's length on the wire, header included
    /// (saturated at `u64::MAX`).
    FrameTooLong {
        /// The frame's length on the wire.
        length: u64,
        /// The codec's maximum frame length.
        max: usize,
    },
    /// A delimiter-based codec found no delimiter ending within the first
    /// `max` bytes: the frame would be longer than the maximum.
    DelimiterNotFound {
        /// The codec's maximum frame length.
        max: usize,
    },
    /// A length field's value, after the length adjustment, gives a frame
    /// shorter than its own header (a negative adjusted length).
    InvalidLength {
        /// The length field's value as read.
        value: u64,
        /// The codec's length adjustment.
        adjustment: i64,
        /// Header length (length field offset plus length field length).
        header: usize,
    },
    /// [`Framed`](super::Framed) holds `buffered` bytes, at least the codec's
    /// maximum frame length, and the codec still asks for more: the frame
    /// cannot fit. (Only user-defined codecs can get here; the built-in ones
    /// report the more precise errors above first.)
    BufferLimit {
        /// Bytes buffered without a complete frame.
        buffered: usize,
        /// The codec's maximum frame length.
        max: usize,
    },
    /// Encoding: the length to write does not fit the length field (or is
    /// negative after the adjustment).
    LengthFieldOverflow {
        /// The length that was to be written.
        length: i128,
        /// Length field length in bytes.
        field_length: usize,
    },
    /// Encoding with a fixed-length codec: the frame is not a multiple of
    /// the frame length.
    NotMultiple {
        /// The frame's length.
        length: usize,
        /// The codec's frame length.
        frame_length: usize,
    },
    /// Encoding with a delimiter-based codec: the frame contains a delimiter
    /// (or ends in a way that would merge with one), so the peer would split
    /// it differently.
    DelimiterInFrame,
    /// A user-defined codec broke the [`Codec`](super::Codec) contract (a
    /// frame consuming no byte or more bytes than it was given).
    Misbehaved(&'static str),
    /// A user-defined codec's own error.
    Custom(Box<dyn std::error::Error + Send + Sync>),
    /// Writing the encoded frame failed: on the loop, the connection's
    /// write (it closes after the callback); through a
    /// [`FrameHandle`](super::FrameHandle), the request could not be
    /// delivered ([`Error::EngineStopped`](crate::Error::EngineStopped),
    /// or [`Error::MailboxFull`](crate::Error::MailboxFull) from
    /// `try_send_frame`).
    Io(crate::Error),
}

impl CodecError {
    /// Wraps a user-defined codec's own error.
    ///
    /// ```
    /// use ringloop::codec::CodecError;
    /// let err = CodecError::custom("bad magic number");
    /// assert_eq!(err.to_string(), "bad magic number");
    /// ```
    pub fn custom(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Custom(error.into())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLong { length, max } => write!(
                f,
                "frame of {length} bytes exceeds the maximum frame length of {max} bytes"
            ),
            Self::DelimiterNotFound { max } => write!(
                f,
                "no delimiter within the maximum frame length of {max} bytes"
            ),
            Self::InvalidLength {
                value,
                adjustment,
                header,
            } => write!(
                f,
                "length field value {value} with adjustment {adjustment} gives a frame \
                 shorter than its {header}-byte header"
            ),
            Self::BufferLimit { buffered, max } => write!(
                f,
                "{buffered} bytes buffered without a complete frame \
                 (maximum frame length {max} bytes)"
            ),
            Self::LengthFieldOverflow {
                length,
                field_length,
            } => write!(
                f,
                "length {length} does not fit a {field_length}-byte length field"
            ),
            Self::NotMultiple {
                length,
                frame_length,
            } => write!(
                f,
                "a {length}-byte frame is not a multiple of the frame length {frame_length}"
            ),
            Self::DelimiterInFrame => f.write_str("the frame contains a delimiter"),
            Self::Misbehaved(what) => write!(f, "codec broke its contract: {what}"),
            Self::Custom(e) => fmt::Display::fmt(e, f),
            Self::Io(e) => write!(f, "write failed: {e}"),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Custom(e) => Some(&**e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a codec's settings were refused when it was built.
///
/// Converts into [`ringloop::Error::InvalidConfig`](crate::Error::InvalidConfig),
/// so `?` works in a function returning [`ringloop::Result`](crate::Result).
///
/// ```
/// use ringloop::codec::{ConfigError, LengthFieldCodec};
///
/// let err = LengthFieldCodec::builder().length_field_length(5).build().unwrap_err();
/// assert_eq!(err, ConfigError::InvalidLengthFieldLength(5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigError {
    /// The maximum frame length is zero.
    ZeroMaxFrameLength,
    /// The maximum frame length is smaller than the least a frame takes (a
    /// delimiter, a header, a fixed frame).
    MaxFrameTooSmall {
        /// The maximum frame length given.
        max: usize,
        /// The least the codec's frames take.
        needed: usize,
    },
    /// A delimiter is empty.
    EmptyDelimiter,
    /// A fixed-length codec's frame length is zero.
    ZeroFrameLength,
    /// A length field length other than 1, 2, 3, 4 or 8 bytes.
    InvalidLengthFieldLength(usize),
    /// More initial bytes to strip than the header (length field offset plus
    /// length field length) holds.
    StripBeyondHeader {
        /// Initial bytes to strip.
        strip: usize,
        /// Header length.
        header: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMaxFrameLength => f.write_str("the maximum frame length is zero"),
            Self::MaxFrameTooSmall { max, needed } => write!(
                f,
                "the maximum frame length {max} is below the {needed} bytes every frame takes"
            ),
            Self::EmptyDelimiter => f.write_str("a delimiter is empty"),
            Self::ZeroFrameLength => f.write_str("the fixed frame length is zero"),
            Self::InvalidLengthFieldLength(n) => {
                write!(f, "a length field of {n} bytes (use 1, 2, 3, 4 or 8)")
            }
            Self::StripBeyondHeader { strip, header } => write!(
                f,
                "{strip} initial bytes to strip exceed the {header}-byte header"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::InvalidConfig(format!("codec: {e}"))
    }
}
