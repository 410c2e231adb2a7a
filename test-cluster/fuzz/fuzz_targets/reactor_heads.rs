//! Both heads of a reactor exchange. The request head the host encodes from a client's
//! request decodes, by the grammar of docs/reactor-abi.md, to exactly that request; the
//! response header lines a module sends parse or are refused, never panic, and what parses
//! prints back as the same headers.

#![no_main]

use std::net::SocketAddr;

use fabricks_reactor_abi::{encode_head, response_headers};
use http::{HeaderName, HeaderValue, Method, Request, Version};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    method: String,
    target: String,
    version: u8,
    remote: SocketAddr,
    headers: Vec<(String, Vec<u8>)>,
    response: Vec<u8>,
}

fuzz_target!(|input: Input| {
    request_head(&input);
    response(&input.response);
});

fn request_head(input: &Input) {
    let Ok(method) = Method::from_bytes(input.method.as_bytes()) else { return };
    let version = [Version::HTTP_09, Version::HTTP_10, Version::HTTP_11, Version::HTTP_2][input.version as usize % 4];
    let mut request = Request::builder().method(method).uri(input.target.as_str()).version(version);
    for (name, value) in &input.headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) else {
            return;
        };
        request = request.header(name, value);
    }
    let Ok(request) = request.body(()) else { return };
    let (parts, ()) = request.into_parts();
    let head = encode_head(&parts, input.remote);

    let mut lines = head.split(|&b| b == b'\n');
    let mut line = || lines.next().expect("the head has four lines before its headers");
    assert_eq!(line(), parts.method.as_str().as_bytes());
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    assert_eq!(line(), target.as_bytes());
    assert_eq!(line(), format!("{:?}", parts.version).as_bytes());
    assert_eq!(line(), input.remote.to_string().as_bytes());
    let decoded: Vec<(&[u8], &[u8])> = lines
        .map(|l| {
            let at = l.windows(2).position(|w| w == b": ").expect("a header line has `: `");
            (&l[..at], &l[at + 2..])
        })
        .collect();
    let sent: Vec<(&[u8], &[u8])> = parts.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())).collect();
    assert_eq!(decoded, sent, "the header lines of {head:?}");
}

fn response(lines: &[u8]) {
    let Ok(headers) = response_headers(lines) else { return };
    let mut printed = Vec::new();
    for (name, value) in &headers {
        printed.extend_from_slice(name.as_str().as_bytes());
        printed.extend_from_slice(b": ");
        printed.extend_from_slice(value.as_bytes());
        printed.push(b'\n');
    }
    assert_eq!(response_headers(&printed).expect("printed headers parse"), headers, "{lines:?}");
}
