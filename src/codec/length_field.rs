//! [`LengthFieldCodec`]: frames announced by a length field in their header
//! (Netty's `LengthFieldBasedFrameDecoder` and `LengthFieldPrepender`, gnet's
//! `LengthFieldBasedFrameCodec`).
//!
//! Owns header parsing and writing. A frame's length is checked against the
//! maximum as soon as its header is complete, before any of its body is
//! buffered; all length arithmetic is done in `i128`, so no field value and
//! adjustment can overflow.

use super::{Codec, CodecError, ConfigError, Frame, DEFAULT_MAX_FRAME_LENGTH};

/// Byte order of a length field.
///
/// ```
/// use ringloop::codec::{ByteOrder, Codec, LengthFieldCodec};
/// let mut le = LengthFieldCodec::builder().length_field_length(2).byte_order(ByteOrder::LittleEndian).build()?;
/// assert_eq!(le.decode(b"\x01\x00x")?.unwrap().data.as_ref(), b"x");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Most significant byte first (network order; the default).
    #[default]
    BigEndian,
    /// Least significant byte first.
    LittleEndian,
}

impl ByteOrder {
    /// Reads an unsigned integer of `bytes.len()` (at most 8) bytes.
    #[inline]
    fn read(self, bytes: &[u8]) -> u64 {
        let big = self == ByteOrder::BigEndian;
        // The field lengths in use, as single loads; anything else folds.
        match *bytes {
            [a] => u64::from(a),
            [a, b] if big => u64::from(u16::from_be_bytes([a, b])),
            [a, b] => u64::from(u16::from_le_bytes([a, b])),
            [a, b, c, d] if big => u64::from(u32::from_be_bytes([a, b, c, d])),
            [a, b, c, d] => u64::from(u32::from_le_bytes([a, b, c, d])),
            [a, b, c, d, e, f, g, h] if big => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            [a, b, c, d, e, f, g, h] => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            _ => {
                let fold = |acc: u64, &b: &u8| (acc << 8) | u64::from(b);
                if big {
                    bytes.iter().fold(0, fold)
                } else {
                    bytes.iter().rev().fold(0, fold)
                }
            }
        }
    }

    /// Appends `value` as `len` (at most 8) bytes; `value` must fit.
    #[inline]
    fn write(self, value: u64, len: usize, dst: &mut Vec<u8>) {
        match self {
            ByteOrder::BigEndian => dst.extend_from_slice(&value.to_be_bytes()[8 - len..]),
            ByteOrder::LittleEndian => dst.extend_from_slice(&value.to_le_bytes()[..len]),
        }
    }
}

fn valid_field_length(n: usize) -> bool {
    matches!(n, 1 | 2 | 3 | 4 | 8)
}

/// The largest value a field of `n` bytes holds.
fn field_capacity(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Frames whose header holds their length.
///
/// ```text
///   decoding:  [ offset bytes | length field | rest of header + body ]
///               '---- header: offset + field length ----'
///   frame length on the wire = field value + length adjustment + header
///   decoded frame = the wire frame minus its first `initial_bytes_to_strip`
/// ```
///
/// Decoder options (all of Netty's and gnet's): byte order, length field
/// offset, length field length (1, 2, 3, 4 or 8 bytes), length adjustment
/// (signed: added to the field's value, e.g. `-4` when the value counts the
/// field itself), initial bytes to strip (at most the header; default the
/// whole header, so a frame is its payload), maximum frame length (the wire
/// frame, header included; default [`DEFAULT_MAX_FRAME_LENGTH`]).
///
/// Encoder options (Netty's `LengthFieldPrepender`): byte order and length
/// field length (default: the decoder's), length adjustment (added to the
/// payload length), and whether the written length includes the length
/// field itself. The encoder prepends only the length field; it is the
/// decoder's inverse when the decoder's offset is 0, it strips the field,
/// and the two adjustments cancel out.
///
/// Hostile input: a frame announced longer than the maximum is refused with
/// [`CodecError::FrameTooLong`] as soon as its header is read, and a value
/// that the adjustment makes shorter than the header with
/// [`CodecError::InvalidLength`].
///
/// ```
/// use ringloop::codec::{Codec, CodecError, LengthFieldCodec};
///
/// // 2-byte big-endian length that counts itself, as in many protocols.
/// let mut codec = LengthFieldCodec::builder()
///     .length_field_length(2)
///     .length_adjustment(-2)
///     .length_includes_length_field(true)
///     .build()?;
/// let mut wire = Vec::new();
/// codec.encode(b"hi", &mut wire)?;
/// assert_eq!(wire, b"\x00\x04hi");
/// assert_eq!(codec.decode(&wire)?.unwrap().data.as_ref(), b"hi");
/// // A value of 1 is shorter than the field itself.
/// assert!(matches!(codec.decode(b"\x00\x01"), Err(CodecError::InvalidLength { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LengthFieldCodec {
    order: ByteOrder,
    offset: usize,
    field: usize,
    adjustment: i64,
    strip: usize,
    max: usize,
    enc_order: ByteOrder,
    enc_field: usize,
    enc_adjustment: i64,
    includes_field: bool,
}

impl Default for LengthFieldCodec {
    /// A 4-byte big-endian length before the payload, stripped when
    /// decoding; maximum [`DEFAULT_MAX_FRAME_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut codec = LengthFieldCodec::default();
    /// assert_eq!(codec.decode(b"\0\0\0\x01!")?.unwrap().data.as_ref(), b"!");
    /// # Ok::<(), ringloop::codec::CodecError>(())
    /// ```
    fn default() -> Self {
        Self {
            order: ByteOrder::BigEndian,
            offset: 0,
            field: 4,
            adjustment: 0,
            strip: 4,
            max: DEFAULT_MAX_FRAME_LENGTH,
            enc_order: ByteOrder::BigEndian,
            enc_field: 4,
            enc_adjustment: 0,
            includes_field: false,
        }
    }
}

impl LengthFieldCodec {
    /// Starts building a codec; without changes it builds
    /// [`LengthFieldCodec::default`].
    ///
    /// ```
    /// use ringloop::codec::{ByteOrder, LengthFieldCodec};
    /// let codec = LengthFieldCodec::builder()
    ///     .byte_order(ByteOrder::LittleEndian)
    ///     .length_field_offset(2)      // a 2-byte type tag comes first
    ///     .length_field_length(3)
    ///     .initial_bytes_to_strip(0)   // keep the whole header
    ///     .max_frame_length(1 << 20)
    ///     .build()?;
    /// # Ok::<(), ringloop::codec::ConfigError>(())
    /// ```
    pub fn builder() -> LengthFieldCodecBuilder {
        LengthFieldCodecBuilder {
            order: ByteOrder::BigEndian,
            offset: 0,
            field: 4,
            adjustment: 0,
            strip: None,
            max: DEFAULT_MAX_FRAME_LENGTH,
            enc_order: None,
            enc_field: None,
            enc_adjustment: 0,
            includes_field: false,
        }
    }

    /// Bytes before the body: length field offset plus length field length.
    fn header(&self) -> usize {
        self.offset + self.field
    }

    /// The wire length of the frame whose header `header` is, or why it is
    /// refused.
    #[inline]
    fn frame_length(&self, header: &[u8]) -> Result<usize, CodecError> {
        let value = self.order.read(&header[self.offset..]);
        let header_len = self.header();
        let length = i128::from(value) + i128::from(self.adjustment) + header_len as i128;
        if length < header_len as i128 {
            return Err(CodecError::InvalidLength {
                value,
                adjustment: self.adjustment,
                header: header_len,
            });
        }
        match usize::try_from(length) {
            Ok(length) if length <= self.max => Ok(length),
            _ => Err(CodecError::FrameTooLong {
                length: u64::try_from(length).unwrap_or(u64::MAX),
                max: self.max,
            }),
        }
    }
}

impl Codec for LengthFieldCodec {
    #[inline]
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        let Some(header) = src.get(..self.header()) else {
            return Ok(None);
        };
        let length = self.frame_length(header)?;
        // `strip <= header <= length`, checked when built and just above.
        Ok(src
            .get(self.strip..length)
            .map(|frame| Frame::borrowed(frame, length)))
    }

    /// Prepends the length field to `frame`. Refuses a frame whose length
    /// (adjusted) does not fit the field or is negative, and one longer than
    /// the maximum with its field.
    #[inline]
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut length = frame.len() as i128 + i128::from(self.enc_adjustment);
        if self.includes_field {
            length += self.enc_field as i128;
        }
        let value = match u64::try_from(length) {
            Ok(v) if v <= field_capacity(self.enc_field) => v,
            _ => {
                return Err(CodecError::LengthFieldOverflow {
                    length,
                    field_length: self.enc_field,
                })
            }
        };
        let wire = frame.len().saturating_add(self.enc_field);
        if wire > self.max {
            return Err(CodecError::FrameTooLong {
                length: wire as u64,
                max: self.max,
            });
        }
        dst.reserve(wire);
        self.enc_order.write(value, self.enc_field, dst);
        dst.extend_from_slice(frame);
        Ok(())
    }

    #[inline]
    fn max_frame_length(&self) -> usize {
        self.max
    }
}

/// Settings of a [`LengthFieldCodec`]; [`build`](Self::build) checks them.
///
/// ```
/// use ringloop::codec::LengthFieldCodec;
/// // gnet's example: 2-byte length that counts the 2-byte field, kept.
/// let codec = LengthFieldCodec::builder()
///     .length_field_length(2)
///     .length_adjustment(-2)
///     .initial_bytes_to_strip(0)
///     .length_includes_length_field(true)
///     .build()?;
/// # Ok::<(), ringloop::codec::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct LengthFieldCodecBuilder {
    order: ByteOrder,
    offset: usize,
    field: usize,
    adjustment: i64,
    strip: Option<usize>,
    max: usize,
    enc_order: Option<ByteOrder>,
    enc_field: Option<usize>,
    enc_adjustment: i64,
    includes_field: bool,
}

impl LengthFieldCodecBuilder {
    /// Byte order of the length field (decoder, and encoder unless
    /// [`encoder_byte_order`](Self::encoder_byte_order) is set). Default big
    /// endian.
    ///
    /// ```
    /// use ringloop::codec::{ByteOrder, Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().byte_order(ByteOrder::LittleEndian).build()?;
    /// let mut out = Vec::new();
    /// c.encode(b"ab", &mut out)?;
    /// assert_eq!(out, b"\x02\0\0\0ab");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn byte_order(mut self, order: ByteOrder) -> Self {
        self.order = order;
        self
    }

    /// Bytes before the length field (decoder). Default 0.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder()
    ///     .length_field_offset(1).length_field_length(1).initial_bytes_to_strip(0).build()?;
    /// assert_eq!(c.decode(b"T\x02ab")?.unwrap().data.as_ref(), b"T\x02ab");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn length_field_offset(mut self, bytes: usize) -> Self {
        self.offset = bytes;
        self
    }

    /// Length field length: 1, 2, 3, 4 or 8 bytes (decoder, and encoder
    /// unless [`encoder_length_field_length`](Self::encoder_length_field_length)
    /// is set). Default 4.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().length_field_length(3).build()?;
    /// assert_eq!(c.decode(b"\0\0\x01z")?.unwrap().data.as_ref(), b"z");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn length_field_length(mut self, bytes: usize) -> Self {
        self.field = bytes;
        self
    }

    /// Added to the field's value to get the length of what follows the
    /// header (decoder). Default 0. Negative when the value counts the
    /// header, positive when it leaves out a trailer.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// // The value counts its own 4 bytes.
    /// let mut c = LengthFieldCodec::builder().length_adjustment(-4).build()?;
    /// assert_eq!(c.decode(b"\0\0\0\x05!")?.unwrap().data.as_ref(), b"!");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn length_adjustment(mut self, adjustment: i64) -> Self {
        self.adjustment = adjustment;
        self
    }

    /// Bytes cut from the front of each decoded frame, at most the header.
    /// Default: the whole header.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().initial_bytes_to_strip(0).build()?;
    /// assert_eq!(c.decode(b"\0\0\0\x01!")?.unwrap().data.as_ref(), b"\0\0\0\x01!");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn initial_bytes_to_strip(mut self, bytes: usize) -> Self {
        self.strip = Some(bytes);
        self
    }

    /// The most bytes a frame may take on the wire, header included.
    /// Default [`DEFAULT_MAX_FRAME_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, CodecError, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().max_frame_length(8).build()?;
    /// assert!(matches!(c.decode(b"\0\0\0\x05"), Err(CodecError::FrameTooLong { length: 9, max: 8 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max = bytes;
        self
    }

    /// Byte order the encoder writes. Default: [`byte_order`](Self::byte_order).
    ///
    /// ```
    /// use ringloop::codec::{ByteOrder, Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().encoder_byte_order(ByteOrder::LittleEndian).build()?;
    /// let mut out = Vec::new();
    /// c.encode(b"a", &mut out)?;
    /// assert_eq!(out, b"\x01\0\0\0a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoder_byte_order(mut self, order: ByteOrder) -> Self {
        self.enc_order = Some(order);
        self
    }

    /// Length field length the encoder writes: 1, 2, 3, 4 or 8. Default:
    /// [`length_field_length`](Self::length_field_length).
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().encoder_length_field_length(1).build()?;
    /// let mut out = Vec::new();
    /// c.encode(b"a", &mut out)?;
    /// assert_eq!(out, b"\x01a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoder_length_field_length(mut self, bytes: usize) -> Self {
        self.enc_field = Some(bytes);
        self
    }

    /// Added by the encoder to the payload's length. Default 0.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().encoder_length_adjustment(1).build()?;
    /// let mut out = Vec::new();
    /// c.encode(b"a", &mut out)?;
    /// assert_eq!(out, b"\0\0\0\x02a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encoder_length_adjustment(mut self, adjustment: i64) -> Self {
        self.enc_adjustment = adjustment;
        self
    }

    /// Whether the length the encoder writes counts the length field
    /// itself. Default `false`.
    ///
    /// ```
    /// use ringloop::codec::{Codec, LengthFieldCodec};
    /// let mut c = LengthFieldCodec::builder().length_includes_length_field(true).build()?;
    /// let mut out = Vec::new();
    /// c.encode(b"a", &mut out)?;
    /// assert_eq!(out, b"\0\0\0\x05a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn length_includes_length_field(mut self, includes: bool) -> Self {
        self.includes_field = includes;
        self
    }

    /// Checks the settings: field lengths of 1, 2, 3, 4 or 8 bytes, a
    /// maximum that is not zero and holds the header, nothing stripped
    /// beyond the header.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, LengthFieldCodec};
    /// let err = LengthFieldCodec::builder().initial_bytes_to_strip(5).build().unwrap_err();
    /// assert_eq!(err, ConfigError::StripBeyondHeader { strip: 5, header: 4 });
    /// ```
    pub fn build(self) -> Result<LengthFieldCodec, ConfigError> {
        let enc_field = self.enc_field.unwrap_or(self.field);
        for n in [self.field, enc_field] {
            if !valid_field_length(n) {
                return Err(ConfigError::InvalidLengthFieldLength(n));
            }
        }
        if self.max == 0 {
            return Err(ConfigError::ZeroMaxFrameLength);
        }
        let header = self.offset.saturating_add(self.field);
        if header > self.max {
            return Err(ConfigError::MaxFrameTooSmall {
                max: self.max,
                needed: header,
            });
        }
        let strip = self.strip.unwrap_or(header);
        if strip > header {
            return Err(ConfigError::StripBeyondHeader { strip, header });
        }
        Ok(LengthFieldCodec {
            order: self.order,
            offset: self.offset,
            field: self.field,
            adjustment: self.adjustment,
            strip,
            max: self.max,
            enc_order: self.enc_order.unwrap_or(self.order),
            enc_field,
            enc_adjustment: self.enc_adjustment,
            includes_field: self.includes_field,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::{assert_split_invariant, drive};
    use proptest::prelude::*;

    #[test]
    fn every_field_length_and_byte_order_at_every_boundary() {
        for field in [1, 2, 3, 4, 8] {
            for order in [ByteOrder::BigEndian, ByteOrder::LittleEndian] {
                let mut codec = LengthFieldCodec::builder()
                    .length_field_length(field)
                    .byte_order(order)
                    .build()
                    .unwrap();
                let mut wire = Vec::new();
                for p in [&b"one"[..], b"", b"three", b"x"] {
                    codec.encode(p, &mut wire).unwrap();
                }
                // The start of a next frame: a partial header, or a header alone.
                wire.push(if field == 1 { 5 } else { 0 });
                let (got, err) = assert_split_invariant(&codec, &wire);
                assert_eq!(got, [&b"one"[..], b"", b"three", b"x"], "{field} {order:?}");
                assert!(err.is_none());
            }
        }
    }

    #[test]
    fn netty_documented_layouts() {
        // Offset 2 (a header field first), 3-byte length, keep everything.
        let c = LengthFieldCodec::builder()
            .length_field_offset(2)
            .length_field_length(3)
            .initial_bytes_to_strip(0)
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&c, b"\xca\xfe\x00\x00\x02hi");
        assert_eq!(got, [b"\xca\xfe\x00\x00\x02hi"]);
        // Length field in the middle, 1-byte header after it counted by the
        // adjustment; strip the first 3 bytes (HDR1 + length).
        let c = LengthFieldCodec::builder()
            .length_field_offset(1)
            .length_field_length(2)
            .length_adjustment(1)
            .initial_bytes_to_strip(3)
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&c, b"\xca\x00\x02\xfeab");
        assert_eq!(got, [b"\xfeab"]);
        // The value counts the whole frame: adjustment -(offset + field).
        let c = LengthFieldCodec::builder()
            .length_field_offset(1)
            .length_field_length(2)
            .length_adjustment(-3)
            .initial_bytes_to_strip(3)
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&c, b"\xca\x00\x05ab");
        assert_eq!(got, [b"ab"]);
    }

    #[test]
    fn an_announced_giant_frame_is_refused_from_its_header_alone() {
        let mut c = LengthFieldCodec::builder()
            .max_frame_length(1 << 20)
            .build()
            .unwrap();
        // Only the header has arrived: refused now, not after 4 GiB.
        let err = c.decode(&[0xff; 4]).unwrap_err();
        assert!(matches!(
            err,
            CodecError::FrameTooLong {
                length: 0x1_0000_0003,
                max: 1_048_576
            }
        ));
        // The largest 8-byte value plus a positive adjustment: no overflow.
        let mut c = LengthFieldCodec::builder()
            .length_field_length(8)
            .length_adjustment(i64::MAX)
            .build()
            .unwrap();
        assert!(matches!(
            c.decode(&[0xff; 8]),
            Err(CodecError::FrameTooLong {
                length: u64::MAX,
                ..
            })
        ));
        // One byte short of the header: waits.
        assert!(c.decode(&[0xff; 7]).unwrap().is_none());
        // Exactly the maximum is fine.
        let mut c = LengthFieldCodec::builder()
            .max_frame_length(6)
            .build()
            .unwrap();
        assert!(c.decode(b"\0\0\0\x02ab").unwrap().is_some());
        assert!(c.decode(b"\0\0\0\x03").is_err());
    }

    #[test]
    fn a_negative_adjusted_length_is_refused() {
        let mut c = LengthFieldCodec::builder()
            .length_field_length(2)
            .length_adjustment(-10)
            .build()
            .unwrap();
        assert!(matches!(
            c.decode(b"\x00\x03"),
            Err(CodecError::InvalidLength {
                value: 3,
                adjustment: -10,
                header: 2
            })
        ));
        assert_eq!(c.decode(b"\x00\x0aZ").unwrap().unwrap().consumed, 2);
        let mut c = LengthFieldCodec::builder()
            .length_field_length(8)
            .length_adjustment(i64::MIN)
            .build()
            .unwrap();
        assert!(c.decode(&[0; 8]).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        let b = LengthFieldCodec::builder;
        for n in [0, 5, 6, 7, 9, 16] {
            assert_eq!(
                b().length_field_length(n).build().unwrap_err(),
                ConfigError::InvalidLengthFieldLength(n)
            );
            assert_eq!(
                b().encoder_length_field_length(n).build().unwrap_err(),
                ConfigError::InvalidLengthFieldLength(n)
            );
        }
        assert_eq!(
            b().max_frame_length(0).build().unwrap_err(),
            ConfigError::ZeroMaxFrameLength
        );
        assert_eq!(
            b().length_field_offset(2)
                .initial_bytes_to_strip(7)
                .build()
                .unwrap_err(),
            ConfigError::StripBeyondHeader {
                strip: 7,
                header: 6
            }
        );
        assert_eq!(
            b().length_field_offset(10)
                .max_frame_length(12)
                .build()
                .unwrap_err(),
            ConfigError::MaxFrameTooSmall {
                max: 12,
                needed: 14
            }
        );
        assert_eq!(
            b().length_field_offset(usize::MAX).build().unwrap_err(),
            ConfigError::MaxFrameTooSmall {
                max: DEFAULT_MAX_FRAME_LENGTH,
                needed: usize::MAX
            }
        );
    }

    #[test]
    fn encoder_refuses_lengths_that_do_not_fit() {
        let mut one = LengthFieldCodec::builder()
            .length_field_length(1)
            .build()
            .unwrap();
        let mut out = Vec::new();
        one.encode(&[0; 255], &mut out).unwrap();
        assert!(matches!(
            one.encode(&[0; 256], &mut out),
            Err(CodecError::LengthFieldOverflow {
                length: 256,
                field_length: 1
            })
        ));
        let mut neg = LengthFieldCodec::builder()
            .encoder_length_adjustment(-2)
            .build()
            .unwrap();
        assert!(neg.encode(b"a", &mut out).is_err());
        let mut small = LengthFieldCodec::builder()
            .max_frame_length(6)
            .build()
            .unwrap();
        small.encode(b"ab", &mut out).unwrap();
        assert!(matches!(
            small.encode(b"abc", &mut out),
            Err(CodecError::FrameTooLong { length: 7, max: 6 })
        ));
        let mut three = LengthFieldCodec::builder()
            .length_field_length(3)
            .max_frame_length(usize::MAX)
            .build()
            .unwrap();
        let big = vec![0u8; 1 << 24];
        assert!(three.encode(&big, &mut Vec::new()).is_err());
        assert!(three.encode(&big[1..], &mut Vec::new()).is_ok());
    }

    fn order() -> impl Strategy<Value = ByteOrder> {
        prop::sample::select(vec![ByteOrder::BigEndian, ByteOrder::LittleEndian])
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(
            field in prop::sample::select(vec![1usize, 2, 3, 4, 8]),
            order in order(),
            includes: bool,
            adjustment in -3i64..=3,
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            // The decoder undoes what the encoder adds.
            let decode_adjustment = -adjustment - if includes { field as i64 } else { 0 };
            let mut codec = LengthFieldCodec::builder()
                .length_field_length(field)
                .byte_order(order)
                .length_adjustment(decode_adjustment)
                .encoder_length_adjustment(adjustment)
                .length_includes_length_field(includes)
                .build()
                .unwrap();
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for p in &payloads {
                match codec.encode(p, &mut wire) {
                    Ok(()) => sent.push(p.clone()),
                    // Only a 1-byte field, or a negative adjustment on a
                    // short payload, can refuse.
                    Err(_) => prop_assert!(field == 1 || (p.len() as i64) + adjustment < 0),
                }
            }
            let (a, b) = wire.split_at(cut.index(wire.len() + 1));
            prop_assert_eq!(drive(&mut codec, &[a, b]), (sent, None));
        }

        #[test]
        fn any_split_decodes_as_the_whole(
            offset in 0usize..3,
            field in prop::sample::select(vec![1usize, 2, 3, 4, 8]),
            order in order(),
            adjustment in -12i64..12,
            strip_seed: usize,
            max in 1usize..64,
            bytes in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 7, 0xff]), 0..60),
        ) {
            let header = offset + field;
            let Ok(codec) = LengthFieldCodec::builder()
                .length_field_offset(offset)
                .length_field_length(field)
                .byte_order(order)
                .length_adjustment(adjustment)
                .initial_bytes_to_strip(strip_seed % (header + 1))
                .max_frame_length(max)
                .build() else {
                prop_assert!(max < header);
                return Ok(());
            };
            assert_split_invariant(&codec, &bytes);
        }
    }
}
