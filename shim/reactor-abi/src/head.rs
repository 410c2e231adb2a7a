//! The two heads of an exchange: the request's, which the host writes into guest memory,
//! and the response's header lines, which the guest writes and the host parses.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The head as ABI version 1 has it: method, request target, protocol, client address, one
/// line each, then one `Name: value` line per header value. The `http` types already refuse
/// a line break in any of them, so the lines cannot run into each other.
pub fn encode_head(parts: &http::request::Parts, remote: SocketAddr) -> Vec<u8> {
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b'\n');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(format!("\n{:?}\n{remote}", parts.version).as_bytes());
    for (name, value) in &parts.headers {
        head.push(b'\n');
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
    }
    head
}

/// The guest's response header lines (`Name: value`, `\n`-separated, blank lines skipped),
/// in order; a line without a colon, a bad name or a bad value is refused with the line.
pub fn response_headers(lines: &[u8]) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let (name, value) = header_line(line)?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn header_line(line: &[u8]) -> Result<(HeaderName, HeaderValue)> {
    let text = String::from_utf8_lossy(line);
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .with_context(|| format!("the module sent the header line {text:?} without a colon"))?;
    let name = HeaderName::from_bytes(&line[..colon]).with_context(|| format!("bad header name in {text:?}"))?;
    let value = trim_start(&line[colon + 1..]);
    let value = HeaderValue::from_bytes(value).with_context(|| format!("bad header value in {text:?}"))?;
    Ok((name, value))
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_head_has_four_lines_then_one_line_per_header_value() {
        let request = http::Request::builder()
            .method("PUT")
            .uri("/echo?a=1&a=2")
            .header("Host", "example")
            .header("X-Test", "one")
            .header("X-Test", "two")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let head = encode_head(&parts, "10.0.0.1:4242".parse().unwrap());
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "PUT\n/echo?a=1&a=2\nHTTP/1.1\n10.0.0.1:4242\nhost: example\nx-test: one\nx-test: two"
        );
    }

    #[test]
    fn response_header_lines_keep_their_order_and_repeats() {
        let headers = response_headers(b"Content-Type: text/plain\n\nSet-Cookie:  a=1\nset-cookie:\tb=2\n").unwrap();
        assert_eq!(headers["content-type"], "text/plain");
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
    }

    #[test]
    fn a_bad_response_header_line_is_refused_with_the_line() {
        let err = response_headers(b"ok: 1\nno colon here").unwrap_err().to_string();
        assert!(err.contains("\"no colon here\" without a colon"), "{err}");
        let err = response_headers(b"bad name: 1").unwrap_err().to_string();
        assert!(err.contains("bad header name"), "{err}");
        assert!(response_headers(b"x: a\rb").is_err(), "a carriage return in a value is refused");
    }
}
