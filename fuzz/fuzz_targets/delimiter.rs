//! DelimiterCodec: one to four delimiters of any bytes, any max, strip or
//! not, any bytes, any reads.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::codec::DelimiterCodec;
use ringloop_fuzz::{check_decode, check_round_trip, payloads};

#[derive(Arbitrary, Debug)]
struct Input {
    first: Vec<u8>,
    more: Vec<Vec<u8>>,
    max: u16,
    strip: bool,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    // Short delimiters over a small alphabet match often; keep them so.
    let first: Vec<u8> = input.first.iter().take(4).map(|b| b % 4).collect();
    let mut builder = DelimiterCodec::builder(&first)
        .max_frame_length(usize::from(input.max))
        .strip_delimiter(input.strip);
    for d in input.more.iter().take(3) {
        let d: Vec<u8> = d.iter().take(4).map(|b| b % 4).collect();
        builder = builder.delimiter(d);
    }
    let Ok(codec) = builder.build() else {
        return; // an empty delimiter or a maximum below one: refused
    };
    let data: Vec<u8> = input.data.iter().map(|b| b % 4).collect();
    check_decode(&codec, &data, &input.cuts);
    if input.strip {
        check_round_trip(&codec, &payloads(&data, &input.cuts), &input.cuts, |p| {
            vec![p.to_vec()]
        });
    }
});
