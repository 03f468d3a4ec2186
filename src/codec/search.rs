//! Byte search for the delimiter codecs: a word-at-a-time `memchr` in safe
//! code (the crate takes no dependency for it).
//!
//! Owns only searching; it knows nothing of frames.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero iff some byte of `word` is zero; the lowest set bit marks the
/// first zero byte (bits above it may be false positives, never below).
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LO) & !word & HI
}

/// The index of the first `needle` in `hay`, scanning 16 bytes per step.
#[inline]
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    let pattern = LO.wrapping_mul(u64::from(needle));
    let mut chunks = hay.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        let (a, b) = chunk.split_at(8);
        let (Ok(a), Ok(b)) = (<[u8; 8]>::try_from(a), <[u8; 8]>::try_from(b)) else {
            break; // unreachable: chunks_exact(16) halves are 8 bytes
        };
        let za = zero_bytes(u64::from_le_bytes(a) ^ pattern);
        let zb = zero_bytes(u64::from_le_bytes(b) ^ pattern);
        if za | zb != 0 {
            let (offset, z) = if za != 0 { (0, za) } else { (8, zb) };
            return Some(base + offset + (z.trailing_zeros() / 8) as usize);
        }
        base += 16;
    }
    hay[base..]
        .iter()
        .position(|&b| b == needle)
        .map(|i| base + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_every_position_and_the_first_of_several() {
        for len in 0..70 {
            for at in 0..len {
                let mut hay = vec![0xAAu8; len];
                hay[at] = b'\n';
                if at + 3 < len {
                    hay[at + 3] = b'\n';
                }
                assert_eq!(find_byte(b'\n', &hay), Some(at), "len {len} at {at}");
            }
            assert_eq!(find_byte(b'\n', &vec![0u8; len]), None);
        }
    }

    #[test]
    fn no_false_positive_from_borrows() {
        // 0x01 next to the needle's XOR image 0x00 is the classic trap.
        let hay = [0x0B, 0x0A ^ 0x01, 0x0B, 0x0B, 0x0B, 0x0B, 0x0B, 0x0B, 0x0A];
        assert_eq!(find_byte(0x0A, &hay), Some(8));
        assert_eq!(find_byte(0x80, &[0x00, 0x7F, 0x81, 0xFF, 0x80]), Some(4));
    }

    proptest! {
        #[test]
        fn agrees_with_position(hay in proptest::collection::vec(any::<u8>(), 0..200), needle: u8) {
            prop_assert_eq!(find_byte(needle, &hay), hay.iter().position(|&b| b == needle));
        }
    }
}
