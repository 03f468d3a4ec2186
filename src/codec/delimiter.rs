//! [`DelimiterCodec`]: frames end with a delimiter, any byte or byte string,
//! or one of several.
//!
//! Owns delimiter matching and encoding. The search looks for the places
//! where a delimiter *ends*: a match there depends only on bytes already
//! received, so a search can resume exactly where the previous call stopped,
//! and the frames found never depend on how the stream was split into reads.

use std::sync::Arc;

use super::{Codec, CodecError, ConfigError, Frame, DEFAULT_MAX_LINE_LENGTH};

/// The delimiters, shared by every connection's copy of a codec.
#[derive(Debug)]
struct Delimiters {
    list: Vec<Box<[u8]>>,
    /// The bytes delimiters end with: where a search looks for candidates.
    ends: Ends,
    /// A single delimiter of two bytes or more is searched for whole
    /// (`memchr::memmem`), so the search skips over bytes that only end
    /// it, say the `\n` of every header line before `\r\n\r\n`.
    whole: Option<memchr::memmem::Finder<'static>>,
    longest: usize,
}

/// The distinct bytes the delimiters end with, in the form the fastest
/// search for them takes: up to three bytes are found with `memchr`'s
/// vectorised `memchr`/`memchr2`/`memchr3`, more through a table.
#[derive(Debug)]
enum Ends {
    One(u8),
    Two(u8, u8),
    Three(u8, u8, u8),
    /// `Many(table)`: `table[b]` is true when some delimiter ends with `b`.
    Many(Box<[bool; 256]>),
}

impl Ends {
    fn new(list: &[Box<[u8]>]) -> Self {
        let mut bytes: Vec<u8> = list.iter().filter_map(|d| d.last().copied()).collect();
        bytes.sort_unstable();
        bytes.dedup();
        match *bytes.as_slice() {
            [a] => Self::One(a),
            [a, b] => Self::Two(a, b),
            [a, b, c] => Self::Three(a, b, c),
            // No delimiter at all (refused by `build`) finds nothing.
            _ => {
                let mut table = Box::new([false; 256]);
                for b in bytes {
                    table[usize::from(b)] = true;
                }
                Self::Many(table)
            }
        }
    }

    /// The first index in `hay` holding one of the bytes.
    #[inline]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        match self {
            Self::One(a) => memchr::memchr(*a, hay),
            Self::Two(a, b) => memchr::memchr2(*a, *b, hay),
            Self::Three(a, b, c) => memchr::memchr3(*a, *b, *c, hay),
            Self::Many(table) => hay.iter().position(|&b| table[usize::from(b)]),
        }
    }
}

impl Delimiters {
    fn new(list: Vec<Box<[u8]>>) -> Self {
        let ends = Ends::new(&list);
        let longest = list.iter().map(|d| d.len()).max().unwrap_or(0);
        let whole = match list.as_slice() {
            [only] if only.len() >= 2 => Some(memchr::memmem::Finder::new(only).into_owned()),
            _ => None,
        };
        Self {
            list,
            ends,
            whole,
            longest,
        }
    }

    /// The next index in `hay` holding a byte some delimiter ends with.
    #[inline]
    fn next_candidate(&self, hay: &[u8]) -> Option<usize> {
        self.ends.find(hay)
    }

    /// The longest delimiter ending exactly at `end` in `buf`, if any.
    #[inline]
    fn longest_ending_at(&self, buf: &[u8], end: usize) -> Option<usize> {
        let head = &buf[..end];
        self.list
            .iter()
            .filter(|d| head.ends_with(d))
            .map(|d| d.len())
            .max()
    }

    /// The first place in `window[from..]` where a delimiter ends: returns
    /// the frame's end (delimiter included) and the delimiter's length.
    #[inline]
    fn find(&self, window: &[u8], mut from: usize) -> Option<(usize, usize)> {
        if let Some(whole) = &self.whole {
            // Ends before `from` were searched already: start where a match
            // ending at `from` would start.
            if from >= window.len() {
                return None;
            }
            let len = whole.needle().len();
            let start = from.saturating_sub(len - 1);
            return whole
                .find(&window[start..])
                .map(|at| (start + at + len, len));
        }
        while from < window.len() {
            let at = from + self.next_candidate(&window[from..])?;
            if let Some(len) = self.longest_ending_at(window, at + 1) {
                return Some((at + 1, len));
            }
            from = at + 1;
        }
        None
    }
}

/// Frames ending with a delimiter: one byte, a byte string, or one of
/// several (Netty's `DelimiterBasedFrameDecoder`, gnet's
/// `DelimiterBasedFrameCodec`).
///
/// A frame ends at the first place in the stream where some delimiter ends;
/// if several end there, the longest is taken. (For delimiters that do not
/// overlap, this is Netty's rule; unlike Netty's, it never depends on how
/// the stream was split into reads.) The encoder appends the first
/// delimiter and refuses a frame that would not decode back to itself.
///
/// Options: the delimiters, the maximum frame length (delimiter included,
/// default [`DEFAULT_MAX_LINE_LENGTH`]) and whether the delimiter is
/// stripped from decoded frames (default yes).
///
/// ```
/// use ringloop::codec::{Codec, DelimiterCodec};
///
/// let mut codec = DelimiterCodec::new(b"\r\n\r\n")?;
/// let frame = codec.decode(b"GET / HTTP/1.0\r\n\r\nnext")?.unwrap();
/// assert_eq!((&*frame.data, frame.consumed), (&b"GET / HTTP/1.0"[..], 18));
///
/// let mut nul = DelimiterCodec::byte(0);
/// let mut out = Vec::new();
/// nul.encode(b"one", &mut out)?;
/// assert_eq!(out, b"one\0");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DelimiterCodec {
    delimiters: Arc<Delimiters>,
    max: usize,
    strip: bool,
    /// End positions of the current input already searched.
    scanned: usize,
}

impl DelimiterCodec {
    /// A codec splitting on `delimiter`, with the default maximum and the
    /// delimiter stripped. Fails if `delimiter` is empty or longer than the
    /// default maximum.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, DelimiterCodec};
    /// assert!(DelimiterCodec::new("||").is_ok());
    /// assert_eq!(DelimiterCodec::new("").unwrap_err(), ConfigError::EmptyDelimiter);
    /// ```
    pub fn new(delimiter: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        Self::builder(delimiter).build()
    }

    /// A codec splitting on one byte (gnet's `DelimiterBasedFrameCodec`).
    ///
    /// ```
    /// use ringloop::codec::{Codec, DelimiterCodec};
    /// let mut codec = DelimiterCodec::byte(b';');
    /// assert_eq!(codec.decode(b"a;b;")?.unwrap().data.as_ref(), b"a");
    /// # Ok::<(), ringloop::codec::CodecError>(())
    /// ```
    pub fn byte(delimiter: u8) -> Self {
        Self {
            delimiters: Arc::new(Delimiters::new(vec![Box::new([delimiter])])),
            max: DEFAULT_MAX_LINE_LENGTH,
            strip: true,
            scanned: 0,
        }
    }

    /// Starts building a codec whose first (encoding) delimiter is
    /// `delimiter`.
    ///
    /// ```
    /// use ringloop::codec::{Codec, DelimiterCodec};
    /// let mut codec = DelimiterCodec::builder("\n").delimiter("\r\n").build()?;
    /// assert_eq!(codec.decode(b"a\r\n")?.unwrap().data.as_ref(), b"a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(delimiter: impl AsRef<[u8]>) -> DelimiterCodecBuilder {
        DelimiterCodecBuilder {
            delimiters: vec![delimiter.as_ref().into()],
            max: DEFAULT_MAX_LINE_LENGTH,
            strip: true,
        }
    }

    /// The frame's end and delimiter length, within the maximum, resuming
    /// the previous search.
    #[inline]
    fn find_end(&mut self, src: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
        let window = &src[..src.len().min(self.max)];
        // Fewer bytes than already searched: the caller broke the contract
        // (see `Codec`); search everything rather than miss a delimiter.
        let start = if self.scanned <= window.len() {
            self.scanned
        } else {
            0
        };
        match self.delimiters.find(window, start) {
            Some(found) => {
                self.scanned = 0;
                Ok(Some(found))
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

impl Codec for DelimiterCodec {
    #[inline]
    fn decode<'a>(&mut self, src: &'a [u8]) -> Result<Option<Frame<'a>>, CodecError> {
        let Some((end, delimiter)) = self.find_end(src)? else {
            return Ok(None);
        };
        let data = if self.strip {
            &src[..end - delimiter]
        } else {
            &src[..end]
        };
        Ok(Some(Frame::borrowed(data, end)))
    }

    /// Appends `frame` and the first delimiter. Refuses a frame longer than
    /// the maximum with its delimiter, and one the peer would split
    /// differently (it contains a delimiter, or its tail and the appended
    /// delimiter form a longer one).
    #[inline]
    fn encode(&mut self, frame: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        let Some(first) = self.delimiters.list.first() else {
            return Err(CodecError::Misbehaved(
                "a delimiter codec without delimiters",
            ));
        };
        let length = frame.len().saturating_add(first.len());
        if length > self.max {
            return Err(CodecError::FrameTooLong {
                length: length as u64,
                max: self.max,
            });
        }
        let start = dst.len();
        dst.reserve(length);
        dst.extend_from_slice(frame);
        dst.extend_from_slice(first);
        // Decode what was written: it must give back exactly `frame`.
        if self.delimiters.find(&dst[start..], 0) != Some((length, first.len())) {
            dst.truncate(start);
            return Err(CodecError::DelimiterInFrame);
        }
        Ok(())
    }

    #[inline]
    fn max_frame_length(&self) -> usize {
        self.max
    }
}

/// Settings of a [`DelimiterCodec`]; [`build`](Self::build) checks them.
///
/// ```
/// use ringloop::codec::DelimiterCodec;
/// let codec = DelimiterCodec::builder(b"\0")
///     .delimiter(b"\xff")
///     .max_frame_length(4096)
///     .strip_delimiter(false)
///     .build()?;
/// # Ok::<(), ringloop::codec::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct DelimiterCodecBuilder {
    delimiters: Vec<Box<[u8]>>,
    max: usize,
    strip: bool,
}

impl DelimiterCodecBuilder {
    /// Adds another delimiter (the encoder keeps using the first).
    ///
    /// ```
    /// use ringloop::codec::{Codec, DelimiterCodec};
    /// let mut codec = DelimiterCodec::builder(";").delimiter(",").build()?;
    /// assert_eq!(codec.decode(b"a,b;")?.unwrap().data.as_ref(), b"a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delimiter(mut self, delimiter: impl AsRef<[u8]>) -> Self {
        self.delimiters.push(delimiter.as_ref().into());
        self
    }

    /// The most bytes a frame may take, delimiter included. Default
    /// [`DEFAULT_MAX_LINE_LENGTH`].
    ///
    /// ```
    /// use ringloop::codec::{Codec, CodecError, DelimiterCodec};
    /// let mut codec = DelimiterCodec::builder(";").max_frame_length(3).build()?;
    /// assert!(matches!(codec.decode(b"abc;"), Err(CodecError::DelimiterNotFound { max: 3 })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_frame_length(mut self, bytes: usize) -> Self {
        self.max = bytes;
        self
    }

    /// Whether decoded frames lose their delimiter (default `true`).
    ///
    /// ```
    /// use ringloop::codec::{Codec, DelimiterCodec};
    /// let mut codec = DelimiterCodec::builder(";").strip_delimiter(false).build()?;
    /// assert_eq!(codec.decode(b"a;")?.unwrap().data.as_ref(), b"a;");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn strip_delimiter(mut self, strip: bool) -> Self {
        self.strip = strip;
        self
    }

    /// Checks the settings: no empty delimiter, a maximum that is not zero
    /// and fits the longest delimiter.
    ///
    /// ```
    /// use ringloop::codec::{ConfigError, DelimiterCodec};
    /// let err = DelimiterCodec::builder("::").max_frame_length(1).build().unwrap_err();
    /// assert_eq!(err, ConfigError::MaxFrameTooSmall { max: 1, needed: 2 });
    /// ```
    pub fn build(self) -> Result<DelimiterCodec, ConfigError> {
        if self.delimiters.iter().any(|d| d.is_empty()) {
            return Err(ConfigError::EmptyDelimiter);
        }
        if self.max == 0 {
            return Err(ConfigError::ZeroMaxFrameLength);
        }
        let delimiters = Delimiters::new(self.delimiters);
        if delimiters.longest > self.max {
            return Err(ConfigError::MaxFrameTooSmall {
                max: self.max,
                needed: delimiters.longest,
            });
        }
        Ok(DelimiterCodec {
            delimiters: Arc::new(delimiters),
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
    fn single_byte_and_byte_string_at_every_boundary() {
        let (got, err) = assert_split_invariant(&DelimiterCodec::byte(b';'), b"a;;bc;d");
        assert_eq!((got, err), (frames(&["a", "", "bc"]), None));
        let codec = DelimiterCodec::new("<>").unwrap();
        let (got, _) = assert_split_invariant(&codec, b"x<<>y<>><>z<");
        assert_eq!(got, frames(&["x<", "y", ">"]));
        let keep = DelimiterCodec::builder("<>")
            .strip_delimiter(false)
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&keep, b"x<<>y<>><>z<");
        assert_eq!(got, frames(&["x<<>", "y<>", "><>"]));
    }

    #[test]
    fn several_delimiters_first_end_wins_longest_on_a_tie() {
        let codec = DelimiterCodec::builder("\n")
            .delimiter("\r\n")
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&codec, b"a\r\nb\nc\r\r\n");
        assert_eq!(got, frames(&["a", "b", "c\r"]));
        // Overlapping delimiters: "bc" ends before "abcd" does.
        let codec = DelimiterCodec::builder("abcd")
            .delimiter("bc")
            .build()
            .unwrap();
        let (got, _) = assert_split_invariant(&codec, b"xabcdy");
        assert_eq!(got, frames(&["xa"]));
        // Different last bytes: the generic scan.
        let codec = DelimiterCodec::builder(",").delimiter("|").build().unwrap();
        let (got, _) = assert_split_invariant(&codec, b"a|b,,c");
        assert_eq!(got, frames(&["a", "b", ""]));
    }

    #[test]
    fn a_missing_delimiter_is_refused_at_the_maximum() {
        let codec = DelimiterCodec::builder("--")
            .max_frame_length(6)
            .build()
            .unwrap();
        assert_eq!(drive(&mut codec.clone(), &[b"1234--"]).0, frames(&["1234"]));
        let (got, err) = assert_split_invariant(&codec, b"1--12345-");
        assert_eq!(got, frames(&["1"]));
        assert_eq!(err.as_deref(), Some("DelimiterNotFound { max: 6 }"));
        // The delimiter straddles the maximum: too long.
        assert!(drive(&mut codec.clone(), &[b"12345--"]).1.is_some());
    }

    #[test]
    fn encoder_refuses_what_would_not_round_trip() {
        let mut codec = DelimiterCodec::builder("\n")
            .delimiter("\r\n")
            .max_frame_length(10)
            .build()
            .unwrap();
        let mut out = Vec::new();
        for bad in [&b"a\nb"[..], b"a\r", b"0123456789"] {
            assert!(codec.encode(bad, &mut out).is_err(), "{bad:?}");
            assert!(out.is_empty());
        }
        let mut overlap = DelimiterCodec::new("abab").unwrap();
        assert!(matches!(
            overlap.encode(b"ab", &mut out),
            Err(CodecError::DelimiterInFrame)
        ));
        overlap.encode(b"ba", &mut out).unwrap();
        assert_eq!(out, b"baabab");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            DelimiterCodec::builder("a")
                .delimiter("")
                .build()
                .unwrap_err(),
            ConfigError::EmptyDelimiter
        );
        assert_eq!(
            DelimiterCodec::builder("a")
                .max_frame_length(0)
                .build()
                .unwrap_err(),
            ConfigError::ZeroMaxFrameLength
        );
        assert_eq!(
            DelimiterCodec::builder("abc")
                .max_frame_length(2)
                .build()
                .unwrap_err(),
            ConfigError::MaxFrameTooSmall { max: 2, needed: 3 }
        );
    }

    fn small_bytes() -> impl Strategy<Value = u8> {
        prop::sample::select(vec![b'a', b'b', b'c'])
    }

    proptest! {
        #[test]
        fn every_form_of_the_end_search_finds_the_first_end(
            ends in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, b'\n', 0xff]), 1..7),
            hay in proptest::collection::vec(prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, b'\n', 0xfe, 0xff]), 0..80),
        ) {
            let list: Vec<Box<[u8]>> = ends.iter().map(|&b| Box::from([b'x', b])).collect();
            let found = Ends::new(&list).find(&hay);
            prop_assert_eq!(found, hay.iter().position(|b| ends.contains(b)));
        }

        #[test]
        fn any_split_decodes_as_the_whole(
            delims in proptest::collection::vec(proptest::collection::vec(small_bytes(), 1..4), 1..4),
            bytes in proptest::collection::vec(small_bytes(), 0..40),
            max in 4usize..16,
            strip: bool,
        ) {
            let mut builder = DelimiterCodec::builder(&delims[0]).max_frame_length(max).strip_delimiter(strip);
            for d in &delims[1..] {
                builder = builder.delimiter(d);
            }
            assert_split_invariant(&builder.build().unwrap(), &bytes);
        }

        #[test]
        fn encode_then_decode_is_the_identity(
            delims in proptest::collection::vec(proptest::collection::vec(small_bytes(), 1..4), 1..3),
            payloads in proptest::collection::vec(proptest::collection::vec(small_bytes(), 0..12), 0..12),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut builder = DelimiterCodec::builder(&delims[0]).max_frame_length(32);
            for d in &delims[1..] {
                builder = builder.delimiter(d);
            }
            let mut codec = builder.build().unwrap();
            let mut wire = Vec::new();
            let mut sent = Vec::new();
            for p in &payloads {
                if codec.encode(p, &mut wire).is_ok() {
                    sent.push(p.clone());
                }
            }
            let (a, b) = wire.split_at(cut.index(wire.len() + 1));
            prop_assert_eq!(drive(&mut codec, &[a, b]), (sent, None));
        }
    }
}
