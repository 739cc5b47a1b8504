//! The server side of the opening handshake on arbitrary bytes: `HeadReader`
//! fed in pieces, `Request::parse`, `validate_request` and `accept_response`
//! never panic, and a request they accept gets a response that the client side
//! (`validate_response`) accepts in turn.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wshub_proto::handshake::{
    accept_response, validate_request, validate_response, ClientRequest, HeadReader, Request,
    Response,
};

fuzz_target!(|data: &[u8]| {
    let [chunk, data @ ..] = data else {
        return;
    };
    let mut reader = HeadReader::new(2048);
    let mut pushed = 0;
    for piece in data.chunks(usize::from(chunk % 32) + 1) {
        if reader.push(piece).is_err() {
            return;
        }
        pushed += piece.len();
    }
    let Some(head) = reader.head() else {
        return;
    };
    assert!(head.ends_with(b"\r\n\r\n"));
    assert_eq!(head.len() + reader.remainder().len(), pushed);

    let Ok(request) = Request::parse(head) else {
        return;
    };
    let _ = (request.path(), request.query(), request.is_upgrade());
    let Ok(upgrade) = validate_request(request) else {
        return;
    };
    let _ = (upgrade.origin(), upgrade.path());
    let protocol = upgrade.protocols.first().map(String::as_str);
    let Ok(response) = accept_response(&upgrade, protocol, None, &[]) else {
        return;
    };

    let client = ClientRequest {
        host: "fuzz.invalid".into(),
        target: "/".into(),
        key: upgrade.key.clone(),
        protocols: upgrade.protocols.clone(),
        extensions: None,
        headers: Vec::new(),
    };
    let parsed = Response::parse(&response).expect("our 101 response parses");
    let accepted = validate_response(&parsed, &client).expect("the client accepts our 101");
    assert_eq!(accepted.protocol.as_deref(), protocol);
});
