//! [`LineCodec`]: frames are lines ending in `\n`, with `\r\n` tolerated.
//!
//! Owns only line splitting and line encoding. The search resumes where the
//! previous call stopped, so a long line arriving in small reads is scanned
//! once.

use super::{Codec, CodecError, ConfigError, Frame, DEFAULT_MAX_LINE_LENGTH};
use memchr::memchr;

/// Lines: a frame ends at the first `\n`; a `\r` just before it is part of
/// the terminator. The encoder appends `\n`.
///
/// Options (Netty's `LineBasedFrameDecoder`): the maximum frame length
/// (terminator included, default [`DEFAULT_MAX_LINE_LENGTH`]) and whether
/// the terminator is stripped from decoded frames (default yes). A peer
/// that sends more than the maximum without a `\n` gets
/// [`CodecError::DelimiterNotFound`].
///
/// ```
/// use ringloop::codec::{Codec, LineCodec};
///
/// let mut codec = LineCodec::new();
/// let input = b"hello\r\nworld\npartial";
/// let first = codec.decode(input)?.unwrap();
/// assert_eq!((&*first.data, first.consumed), (&b"hello"[..], 7));
/// let second = codec.decode(&input[7..])?.unwrap();
/// assert_eq!(&*second.data, b"world");
/// assert!(codec.decode(&input[13..])?.is_none()); // no '\n' yet
///
/// let mut out = Vec::new();
/// codec.encode(b"bye", &mut out)?;
/// assert_eq!(out, b"bye\n");
/// # Ok::<(), ringloop::codec::CodecError>(())
/// ```
#[derive(Clone, Debug)]
pub struct LineCodec {
    max: usize,
    strip: bool,
    /// Bytes of the current input already searched without finding `\n`.
    scanned: usize,
}

impl LineCodec {
    /// A line codec with the defaults: at most [`DEFAULT_MAX_LINE_LENGTH`]
    /// bytes per line, terminators stripped.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// assert_eq!(LineCodec::new().decode(b"ok\n")?.unwrap().data.as_ref(), b"ok");
    /// # Ok::<(), ringloop::codec::CodecError>(())
    /// ```
    pub fn new() -> Self {
        Self {
            max: DEFAULT_MAX_LINE_LENGTH,
            strip: true,
            scanned: 0,
        }
    }

    /// Starts building a line codec with other settings.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// let mut codec = LineCodec::builder().strip_delimiter(false).build()?;
    /// assert_eq!(codec.decode(b"ok\r\n")?.unwrap().data.as_ref(), b"ok\r\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder() -> LineCodecBuilder {
        LineCodecBuilder {
            max: DEFAULT_MAX_LINE_LENGTH,
            strip: true,
        }
    }

    /// Where the first `\n` of `src` is, within the maximum, resuming the
    /// previous search.
    #[inline]
    fn find_newline(&mut self, src: &[u8]) -> Result<Option<usize>, CodecError> {
        let window = &src[..src.len().min(self.max)];
        // Fewer bytes than already searched: the caller broke the contract
        // (see `Codec`); search everything rather than miss a delimiter.
        let start = if self.scanned <= window.len() {
            self.scanned
        } else {
            0
        };
        match memchr(b'\n', &window[start..]) {
            Some(i) => {
                self.scanned = 0;
                Ok(Some(start + i))
            }
            None if src.len() >= self.max => {
                self.scanned = 0;
                Err(CodecError::DelimiterNotFound { max: self.max })
            }
            None => {
                self.scanned = window.len();
                Ok(None)
            }
        }
    }
}

impl Default for LineCodec {
    /// Same as [`LineCodec::new`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// assert_eq!(LineCodec::default().max_frame_length(), 64 * 1024);
    /// ```
    fn default() -> Self {
        Self::new()
    }
}

impl Codec for LineCodec {
    #[inline]
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        let Some(newline) = self.find_newline(src)? else {
            return Ok(None);
        };
        let consumed = newline + 1;
        let end = if !self.strip {
            consumed
        } else if newline > 0 && src[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        Ok(Some(Frame::borrowed(&src[..end], consumed)))
    }

    /// Appends `frame` and `\n`. Refuses a frame containing `\n` or ending
    /// in `\r` (the peer would decode a different line), and one longer than
    /// the maximum with its `\n`.
    #[inline]
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        let length = frame.len().saturating_add(1);
        if length > self.max {
            return Err(CodecError::FrameTooLong {
                length: length as u64,
                max: self.max,
            });
        }
        if frame.last() == Some(&b'\r') || memchr(b'\n', frame).is_some() {
            return Err(CodecError::DelimiterInFrame);
        }
        dst.reserve(length);
        dst.extend_from_slice(frame);
        dst.push(b'\n');
        Ok(())
    }

    #[inline]
    fn max_frame_length(&self) -> usize {
        self.max
    }
}

/// Settings of a [`LineCodec`]; [`build`](Self::build) checks them.
///
/// ```
/// use ringloop::codec::LineCodec;
/// let codec = LineCodec::builder().max_frame_length(1024).strip_delimiter(true).build()?;
/// # Ok::<(), ringloop::codec::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct LineCodecBuilder {
    max: usize,
    strip: bool,
}

impl LineCodecBuilder {
    /// The most bytes a line may take, terminator included (at least 1).
    /// Default [`DEFAULT_MAX_LINE_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, CodecError, LineCodec};
    /// let mut codec = LineCodec::builder().max_frame_length(4).build()?;
    /// assert!(codec.decode(b"abc\n")?.is_some());
    /// assert!(matches!(codec.decode(b"abcd\n"), Err(CodecError::DelimiterNotFound { max: 4 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max = bytes;
        self
    }

    /// Whether decoded lines lose their `\n` / `\r\n` (default `true`).
    ///
    /// ```
    /// use ringloop::codec::{Codec, LineCodec};
    /// let mut codec = LineCodec::builder().strip_delimiter(false).build()?;
    /// assert_eq!(codec.decode(b"a\n")?.unwrap().data.as_ref(), b"a\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strip_delimiter(mut self, strip: bool) -> Self {
        self.strip = strip;
        self
    }

    /// Checks the settings: the maximum must not be zero.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, LineCodec};
    /// let err = LineCodec::builder().max_frame_length(0).build().unwrap_err();
    /// assert_eq!(err, ConfigError::ZeroMaxFrameLength);
    /// ```
    pub fn build(self) -> Result<LineCodec, ConfigError> {
        if self.max == 0 {
            return Err(ConfigError::ZeroMaxFrameLength);
        }
        Ok(LineCodec {
            max: self.max,
            strip: self.strip,
            scanned: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{assert_split_invariant, drive};
    use proptest::prelude::*;

    fn frames(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn splits_lines_at_every_boundary() {
        let input = b"hello\r\nworld\n\n\r\nx\ry\nlast";
        let (got, err) = assert_split_invariant(&LineCodec::new(), input);
        assert_eq!(got, frames(&["hello", "world", "", "", "x\ry"]));
        assert!(err.is_none());
        let codec = LineCodec::builder().strip_delimiter(false).build().unwrap();
        let (got, _) = assert_split_invariant(&codec, input);
        assert_eq!(
            got,
            frames(&["hello\r\n", "world\n", "\n", "\r\n", "x\ry\n"])
        );
    }

    #[test]
    fn many_lines_in_one_read() {
        let input: Vec<u8> = (0..1000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let (got, err) = drive(&mut LineCodec::new(), &[&input]);
        assert!(err.is_none());
        assert_eq!(got.len(), 1000);
        assert_eq!(got[999], b"line 999");
    }

    #[test]
    fn an_endless_line_is_refused_at_the_maximum() {
        let codec = LineCodec::builder().max_frame_length(8).build().unwrap();
        // Exactly 8 bytes with the terminator: accepted.
        assert_eq!(drive(&mut codec.clone(), &[b"1234567\n"]).0.len(), 1);
        // 8 bytes and no '\n': refused without waiting for more.
        let (got, err) = assert_split_invariant(&codec, b"ok\n12345678");
        assert_eq!(got, frames(&["ok"]));
        assert_eq!(err.as_deref(), Some("DelimiterNotFound { max: 8 }"));
        // '\r\n' straddling the limit: the line is 9 bytes.
        let (_, err) = drive(&mut codec.clone(), &[b"1234567\r\n"]);
        assert!(err.is_some());
        // Fewer than 8 bytes: waits.
        assert_eq!(drive(&mut codec.clone(), &[b"1234567"]), (vec![], None));
    }

    #[test]
    fn the_search_resumes_instead_of_rescanning() {
        let mut codec = LineCodec::new();
        let mut buf = Vec::new();
        for _ in 0..100 {
            buf.extend_from_slice(&[b'a'; 100]);
            assert!(codec.decode(&buf).unwrap().is_none());
            assert_eq!(codec.scanned, buf.len());
        }
        buf.push(b'\n');
        assert_eq!(codec.decode(&buf).unwrap().unwrap().consumed, 10_001);
        assert_eq!(codec.scanned, 0);
        // A caller that hands over fewer bytes than before is not trusted.
        codec.scanned = 500;
        assert_eq!(codec.decode(b"a\n").unwrap().unwrap().data.as_ref(), b"a");
    }

    #[test]
    fn encoder_refuses_what_would_not_round_trip() {
        let mut codec = LineCodec::builder().max_frame_length(5).build().unwrap();
        let mut out = b"kept".to_vec();
        for bad in [&b"a\nb"[..], b"ab\r", b"abcde"] {
            assert!(codec.encode(bad, &mut out).is_err(), "{bad:?}");
        }
        assert_eq!(out, b"kept", "a refused frame leaves the output alone");
        codec.encode(b"a\rb", &mut out).unwrap();
        assert_eq!(out, b"kepta\rb\n");
        assert_eq!(
            LineCodec::builder()
                .max_frame_length(0)
                .build()
                .unwrap_err(),
            ConfigError::ZeroMaxFrameLength
        );
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut codec = LineCodec::builder().max_frame_length(64).build().unwrap();
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for line in &lines {
                if codec.encode(line, &mut wire).is_ok() {
                    sent.push(line.clone());
                } else {
                    prop_assert!(line.contains(&b'\n') || line.last() == Some(&b'\r'));
                }
            }
            let (a, b) = wire.split_at(cut.index(wire.len() + 1));
            prop_assert_eq!(drive(&mut codec, &[a, b]), (sent, None));
        }

        #[test]
        fn any_split_decodes_as_the_whole(
            bytes in proptest::collection::vec(prop::sample::select(vec![b'a', b'\r', b'\n']), 0..60),
            max in 1usize..12,
        ) {
            let codec = LineCodec::builder().max_frame_length(max).build().unwrap();
            assert_split_invariant(&codec, &bytes);
        }
    }
}
