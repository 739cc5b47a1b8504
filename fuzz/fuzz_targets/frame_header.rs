//! `FrameHeader::parse` on arbitrary bytes: never panics, and a header it
//! accepts re-encodes to the very bytes it was parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(Some((header, n))) = FrameHeader::parse(data) else {
        return;
    };
    assert_eq!(n, header.encoded_len());
    // `Ok(None)` for every shorter prefix: nothing is decided on part of a header.
    for cut in 0..n {
        assert_eq!(FrameHeader::parse(&data[..cut]), Ok(None));
    }
    let mut buf = [0u8; MAX_HEADER_LEN];
    assert_eq!(header.encode(&mut buf), n);
    // Only minimal length forms parse, so the encoding is byte for byte the input.
    assert_eq!(&buf[..n], &data[..n]);
    assert_eq!(FrameHeader::parse(&buf[..n]), Ok(Some((header, n))));
});
