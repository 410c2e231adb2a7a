//! Answers every request with `200 ok`: nothing in it costs more than the call itself.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Trivial;

impl Guest for Trivial {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        // The host takes up to 4096 bytes per write; this is far less.
        stream.blocking_write_and_flush(b"ok\n").expect("the client went away");
        drop(stream);
        OutgoingBody::finish(body, None).expect("the body is complete");
    }
}

wasip2::http::proxy::export!(Trivial with_types_in wasip2);
