//! LineCodec: any max, strip or not, any bytes, any reads.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::codec::{ConfigError, LineCodec};
use ringloop_fuzz::{check_decode, check_round_trip, payloads};

#[derive(Arbitrary, Debug)]
struct Input {
    max: u16,
    strip: bool,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let built = LineCodec::builder()
        .max_frame_length(usize::from(input.max))
        .strip_delimiter(input.strip)
        .build();
    let codec = match built {
        Ok(codec) => codec,
        Err(e) => {
            assert_eq!((e, input.max), (ConfigError::ZeroMaxFrameLength, 0));
            return;
        }
    };
    check_decode(&codec, &input.data, &input.cuts);
    if input.strip {
        check_round_trip(
            &codec,
            &payloads(&input.data, &input.cuts),
            &input.cuts,
            |p| vec![p.to_vec()],
        );
    }
});
