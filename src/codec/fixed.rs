//! [`FixedLengthCodec`]: every frame has the same length.
//!
//! Owns only fixed-size splitting and its encoder check.

use super::{Codec, CodecError, ConfigError, Frame, DEFAULT_MAX_FRAME_LENGTH};

/// Frames of a fixed number of bytes (Netty's `FixedLengthFrameDecoder`,
/// gnet's `FixedLengthFrameCodec`). The encoder writes a frame as it is and
/// requires its length to be a multiple of the frame length, so the peer
/// decodes it as that many whole frames.
///
/// ```
/// use ringloop::codec::{Codec, CodecError, FixedLengthCodec};
///
/// let mut codec = FixedLengthCodec::new(4)?;
/// assert_eq!(codec.decode(b"abcdef")?.unwrap().data.as_ref(), b"abcd");
/// assert!(codec.decode(b"ef")?.is_none());
///
/// let mut out = Vec::new();
/// codec.encode(b"12345678", &mut out)?; // two frames
/// assert!(matches!(codec.encode(b"123", &mut out), Err(CodecError::NotMultiple { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedLengthCodec {
    frame_length: usize,
    max: usize,
}

impl FixedLengthCodec {
    /// A codec for frames of `frame_length` bytes, which must be between 1
    /// and [`DEFAULT_MAX_FRAME_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, FixedLengthCodec};
    /// assert!(FixedLengthCodec::new(64).is_ok());
    /// assert_eq!(FixedLengthCodec::new(0).unwrap_err(), ConfigError::ZeroFrameLength);
    /// ```
    pub fn new(frame_length: usize) -> Result<Self, ConfigError> {
        Self::builder(frame_length).build()
    }

    /// Starts building a codec for frames of `frame_length` bytes.
    ///
    /// ```
    /// use ringloop::codec::FixedLengthCodec;
    /// let big = FixedLengthCodec::builder(16 << 20).max_frame_length(16 << 20).build()?;
    /// assert_eq!(big.frame_length(), 16 << 20);
    /// # Ok::<(), ringloop::codec::ConfigError>(())
    /// ```
    pub fn builder(frame_length: usize) -> FixedLengthCodecBuilder {
        FixedLengthCodecBuilder {
            frame_length,
            max: DEFAULT_MAX_FRAME_LENGTH,
        }
    }

    /// The length of every frame.
    ///
    /// ```
    /// use ringloop::codec::FixedLengthCodec;
    /// assert_eq!(FixedLengthCodec::new(3)?.frame_length(), 3);
    /// # Ok::<(), ringloop::codec::ConfigError>(())
    /// ```
    pub fn frame_length(&self) -> usize {
        self.frame_length
    }
}

impl Codec for FixedLengthCodec {
    #[inline]
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        Ok(src
            .get(..self.frame_length)
            .map(|frame| Frame::borrowed(frame, self.frame_length)))
    }

    /// Appends `frame` as it is; its length must be a multiple of the frame
    /// length.
    #[inline]
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        if frame.len() % self.frame_length != 0 {
            return Err(CodecError::NotMultiple {
                length: frame.len(),
                frame_length: self.frame_length,
            });
        }
        dst.extend_from_slice(frame);
        Ok(())
    }

    /// The maximum given to the builder (at least the frame length).
    #[inline]
    fn max_frame_length(&self) -> usize {
        self.max
    }
}

/// Settings of a [`FixedLengthCodec`]; [`build`](Self::build) checks them.
///
/// ```
/// use ringloop::codec::FixedLengthCodec;
/// let codec = FixedLengthCodec::builder(512).max_frame_length(1024).build()?;
/// # Ok::<(), ringloop::codec::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct FixedLengthCodecBuilder {
    frame_length: usize,
    max: usize,
}

impl FixedLengthCodecBuilder {
    /// The largest frame length accepted (default
    /// [`DEFAULT_MAX_FRAME_LENGTH`]): a guard against a frame length taken
    /// from an untrusted configuration.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, FixedLengthCodec};
    /// let err = FixedLengthCodec::builder(100).max_frame_length(99).build().unwrap_err();
    /// assert_eq!(err, ConfigError::MaxFrameTooSmall { max: 99, needed: 100 });
    /// ```
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max = bytes;
        self
    }

    /// Checks the settings: a frame length between 1 and the maximum.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, FixedLengthCodec};
    /// assert_eq!(
    ///     FixedLengthCodec::builder(8).max_frame_length(0).build().unwrap_err(),
    ///     ConfigError::ZeroMaxFrameLength
    /// );
    /// ```
    pub fn build(self) -> Result<FixedLengthCodec, ConfigError> {
        if self.max == 0 {
            return Err(ConfigError::ZeroMaxFrameLength);
        }
        if self.frame_length == 0 {
            return Err(ConfigError::ZeroFrameLength);
        }
        if self.frame_length > self.max {
            return Err(ConfigError::MaxFrameTooSmall {
                max: self.max,
                needed: self.frame_length,
            });
        }
        Ok(FixedLengthCodec {
            frame_length: self.frame_length,
            max: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{assert_split_invariant, drive};
    use proptest::prelude::*;

    #[test]
    fn splits_at_every_boundary() {
        let codec = FixedLengthCodec::new(3).unwrap();
        let (got, err) = assert_split_invariant(&codec, b"abcdefghij");
        assert_eq!(got, vec![b"abc".to_vec(), b"def".to_vec(), b"ghi".to_vec()]);
        assert!(err.is_none());
        let one = FixedLengthCodec::new(1).unwrap();
        assert_eq!(assert_split_invariant(&one, b"xyz").0.len(), 3);
    }

    #[test]
    fn many_frames_in_one_read() {
        let input = vec![7u8; 64 * 1000 + 5];
        let (got, _) = drive(&mut FixedLengthCodec::new(64).unwrap(), &[&input]);
        assert_eq!(got.len(), 1000);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            FixedLengthCodec::new(0).unwrap_err(),
            ConfigError::ZeroFrameLength
        );
        assert_eq!(
            FixedLengthCodec::new(DEFAULT_MAX_FRAME_LENGTH + 1).unwrap_err(),
            ConfigError::MaxFrameTooSmall {
                max: DEFAULT_MAX_FRAME_LENGTH,
                needed: DEFAULT_MAX_FRAME_LENGTH + 1
            }
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(
            n in 1usize..9,
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..10),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut codec = FixedLengthCodec::new(n).unwrap();
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for c in &chunks {
                match codec.encode(c, &mut wire) {
                    Ok(()) => sent.extend(c.chunks(n).map(<[u8]>::to_vec)),
                    Err(_) => prop_assert!(c.len() % n != 0),
                }
            }
            let (a, b) = wire.split_at(cut.index(wire.len() + 1));
            prop_assert_eq!(drive(&mut codec, &[a, b]), (sent, None));
        }
    }
}
