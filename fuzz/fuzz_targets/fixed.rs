//! FixedLengthCodec: any frame length and max, any bytes, any reads.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::codec::FixedLengthCodec;
use ringloop_fuzz::{check_decode, check_round_trip, payloads};

#[derive(Arbitrary, Debug)]
struct Input {
    frame_length: u16,
    max: u16,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let n = usize::from(input.frame_length % 64);
    let built = FixedLengthCodec::builder(n)
        .max_frame_length(usize::from(input.max))
        .build();
    let Ok(codec) = built else {
        assert!(n == 0 || input.max == 0 || n > usize::from(input.max));
        return;
    };
    check_decode(&codec, &input.data, &input.cuts);
    check_round_trip(
        &codec,
        &payloads(&input.data, &input.cuts),
        &input.cuts,
        |p| p.chunks(n).map(<[u8]>::to_vec).collect(),
    );
});
