//! The PROXY protocol header parser: any bytes, any prefix. Parsing never
//! panics; every prefix of the input is "need more" or the whole input's
//! answer (so reads may split a header anywhere); a header found is within
//! its length limit, and its own bytes parse back to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringloop::proxy_protocol::{parse, V1_MAX_LEN, V2_MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    if let Ok(Some((header, used))) = &whole {
        assert!(*used <= data.len());
        assert!(*used <= V1_MAX_LEN.max(V2_MAX_LEN));
        assert_eq!(parse(&data[..*used]), Ok(Some((header.clone(), *used))));
        // TLVs iterate without panicking and stay inside the header.
        assert!(header.tlvs().map(|t| t.value.len() + 3).sum::<usize>() <= *used);
    }
    // Every prefix agrees (bounded: headers are short).
    for cut in 0..data.len().min(300) {
        match parse(&data[..cut]) {
            Ok(None) => {}
            other => assert_eq!(other, whole, "prefix of {cut} bytes"),
        }
    }
});
