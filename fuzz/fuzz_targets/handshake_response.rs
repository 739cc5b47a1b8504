//! The client side of the opening handshake on arbitrary bytes:
//! `Response::parse` and `validate_response` never panic, and what they accept
//! is a 101 that picked only what the request offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::handshake::{validate_response, ClientRequest, Response};

fuzz_target!(|data: &[u8]| {
    let Ok(response) = Response::parse(data) else {
        return;
    };
    let request = ClientRequest {
        host: "server.example.com".into(),
        target: "/chat".into(),
        // RFC 6455 §1.3's sample key; its accept value is s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
        key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
        protocols: vec!["chat".into(), "superchat".into()],
        extensions: Some("permessage-deflate; client_max_window_bits".into()),
        headers: Vec::new(),
    };
    let Ok(accepted) = validate_response(&response, &request) else {
        return;
    };
    assert_eq!(response.status, 101);
    if let Some(protocol) = &accepted.protocol {
        assert!(request.protocols.contains(protocol));
    }
    assert!(accepted
        .extensions
        .iter()
        .all(|e| e.name == "permessage-deflate"));
});
