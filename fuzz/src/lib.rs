//! What every fuzz target checks, whatever the codec: decoding never
//! panics, no frame exceeds the maximum, a codec never waits with the
//! maximum already buffered, decoding the stream split into arbitrary reads
//! gives exactly what decoding it whole gives, and frames the encoder
//! accepts decode back to themselves.

use ringloop::codec::Codec;

/// Frames decoded, then the error that stopped decoding (as text), if any.
pub type Outcome = (Vec<Vec<u8>>, Option<String>);

/// Decodes `data` delivered in reads ending at `cuts` (sorted positions),
/// keeping unconsumed bytes between reads as the event loop does, and
/// calling `decode` repeatedly within a read as `Framed` does.
pub fn drive<C: Codec>(codec: &mut C, data: &[u8], cuts: &[usize]) -> Outcome {
    let max = codec.max_frame_length();
    let mut frames = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(Some(data.len())) {
        buf.extend_from_slice(&data[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            match codec.decode(&buf[pos..]) {
                Ok(Some(frame)) => {
                    let left = buf.len() - pos;
                    assert!(frame.consumed >= 1, "a frame consumed nothing");
                    assert!(frame.consumed <= left, "a frame consumed more than given");
                    assert!(
                        frame.consumed <= max,
                        "frame of {} > max {max}",
                        frame.consumed
                    );
                    assert!(frame.data.len() <= max, "frame data over the maximum");
                    frames.push(frame.data.into_owned());
                    pos += frame.consumed;
                }
                Ok(None) => {
                    assert!(buf.len() - pos < max, "waiting with the maximum buffered");
                    break;
                }
                Err(e) => return (frames, Some(format!("{e:?}"))),
            }
        }
        buf.drain(..pos);
    }
    (frames, None)
}

/// Turns arbitrary numbers into sorted read boundaries within `len`.
pub fn cuts(raw: &[u16], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw
        .iter()
        .take(64)
        .map(|&c| usize::from(c) % (len + 1))
        .collect();
    cuts.sort_unstable();
    cuts
}

/// The split-invariance and bound checks: whole, at `cuts`, byte by byte.
pub fn check_decode<C: Codec + Clone>(codec: &C, data: &[u8], raw_cuts: &[u16]) -> Outcome {
    let whole = drive(&mut codec.clone(), data, &[]);
    let split = drive(&mut codec.clone(), data, &cuts(raw_cuts, data.len()));
    assert_eq!(split, whole, "split reads decode differently");
    if data.len() <= 2048 {
        let every: Vec<usize> = (1..data.len()).collect();
        let bytewise = drive(&mut codec.clone(), data, &every);
        assert_eq!(bytewise, whole, "byte-by-byte reads decode differently");
    }
    whole
}

/// Encodes each payload; those accepted must decode back to themselves,
/// whole and split at `raw_cuts`. `expand` says which frames one accepted
/// payload decodes to (itself, or several for fixed-length codecs).
pub fn check_round_trip<C: Codec + Clone>(
    codec: &C,
    payloads: &[&[u8]],
    raw_cuts: &[u16],
    expand: impl Fn(&[u8]) -> Vec<Vec<u8>>,
) {
    let mut enc = codec.clone();
    let mut wire = Vec::new();
    let mut sent = Vec::new();
    for p in payloads {
        let before = wire.len();
        match enc.encode(p, &mut wire) {
            Ok(()) => sent.extend(expand(p)),
            Err(_) => assert_eq!(wire.len(), before, "a refused frame left bytes behind"),
        }
    }
    let whole = drive(&mut codec.clone(), &wire, &[]);
    assert_eq!(
        whole,
        (sent, None),
        "encode then decode is not the identity"
    );
    let split = drive(&mut codec.clone(), &wire, &cuts(raw_cuts, wire.len()));
    assert_eq!(
        split, whole,
        "split reads of encoded frames decode differently"
    );
}

/// Splits `data` into payloads at `raw_cuts`.
pub fn payloads<'a>(data: &'a [u8], raw_cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts(raw_cuts, data.len()) {
        out.push(&data[start..c]);
        start = c;
    }
    out.push(&data[start..]);
    out
}
