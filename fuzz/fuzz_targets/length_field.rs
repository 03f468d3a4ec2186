//! LengthFieldCodec: every decoder setting (including invalid ones, which
//! must be refused by `build`), any bytes, any reads; and a symmetric
//! encoder/decoder pair for the round trip.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::codec::{ByteOrder, LengthFieldCodec};
use ringloop_fuzz::{check_decode, check_round_trip, payloads};

#[derive(Arbitrary, Debug)]
struct Input {
    offset: u8,
    field: u8,
    little: bool,
    adjustment: i64,
    small_adjustment: bool,
    strip: Option<u8>,
    max: u16,
    includes_field: bool,
    encoder_adjustment: i8,
    cuts: Vec<u16>,
    data: Vec<u8>,
}

fn order(little: bool) -> ByteOrder {
    if little {
        ByteOrder::LittleEndian
    } else {
        ByteOrder::BigEndian
    }
}

fuzz_target!(|input: Input| {
    let offset = usize::from(input.offset % 8);
    let field = usize::from(input.field % 10);
    // Small adjustments make real frames; any i64 probes the arithmetic.
    let adjustment = if input.small_adjustment {
        input.adjustment % 16
    } else {
        input.adjustment
    };
    let max = usize::from(input.max);
    let mut builder = LengthFieldCodec::builder()
        .length_field_offset(offset)
        .length_field_length(field)
        .byte_order(order(input.little))
        .length_adjustment(adjustment)
        .max_frame_length(max);
    if let Some(strip) = input.strip {
        builder = builder.initial_bytes_to_strip(usize::from(strip % 16));
    }
    match builder.build() {
        Ok(codec) => {
            check_decode(&codec, &input.data, &input.cuts);
        }
        Err(_) => {
            let header = offset + field;
            let strip = input.strip.map_or(header, |s| usize::from(s % 16));
            assert!(
                !matches!(field, 1 | 2 | 3 | 4 | 8) || max == 0 || header > max || strip > header,
                "valid settings refused: {input:?}"
            );
        }
    }
    // The symmetric pair: what the encoder adds, the decoder takes away.
    if !matches!(field, 1 | 2 | 3 | 4 | 8) || max < field {
        return;
    }
    let enc_adjustment = i64::from(input.encoder_adjustment);
    let includes = if input.includes_field {
        field as i64
    } else {
        0
    };
    let Ok(pair) = LengthFieldCodec::builder()
        .length_field_length(field)
        .byte_order(order(input.little))
        .length_adjustment(-enc_adjustment - includes)
        .encoder_length_adjustment(enc_adjustment)
        .length_includes_length_field(input.includes_field)
        .max_frame_length(max)
        .build()
    else {
        panic!("symmetric settings refused: {input:?}");
    };
    check_round_trip(
        &pair,
        &payloads(&input.data, &input.cuts),
        &input.cuts,
        |p| vec![p.to_vec()],
    );
});
