//! The load generator's message contents: every message is a window of a
//! fixed pseudo-random byte string, shifted by connection and sequence number,
//! so a byte that is lost, duplicated, reordered or crossed with another
//! connection shows up as a mismatch, and checking it is a `memcmp`.

/// Number of distinct shifts; prime, so consecutive messages of one connection
/// and the same message of neighbouring connections all differ.
const SHIFTS: usize = 251;

/// The messages of one run, all `size` bytes long.
pub struct Pattern {
    bytes: Vec<u8>,
    size: usize,
}

impl Pattern {
    /// Messages of `size` bytes.
    pub fn new(size: usize) -> Pattern {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes = (0..size + SHIFTS)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        Pattern { bytes, size }
    }

    /// Message number `seq` of connection `conn`.
    pub fn message(&self, conn: usize, seq: u64) -> &[u8] {
        let shift = ((conn as u64).wrapping_mul(97).wrapping_add(seq) % SHIFTS as u64) as usize;
        &self.bytes[shift..shift + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_differ_between_neighbours() {
        let p = Pattern::new(512);
        assert_eq!(p.message(3, 7).len(), 512);
        assert_ne!(p.message(3, 7), p.message(3, 8));
        assert_ne!(p.message(3, 7), p.message(4, 7));
        assert_eq!(p.message(3, 7), p.message(3, 7 + SHIFTS as u64));
    }
}
