"""A wasi:http service for Fabricks' tests: `GET /` greets, `POST /echo` streams the
request body back as it arrives (flat memory for any size)."""
from componentize_py_types import Err, Ok

from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

CHUNK = 65536
# blocking-write-and-flush takes at most 4096 bytes per call.
WRITE = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method, path = request.method(), request.path_with_query() or "/"
        if isinstance(method, Method_Get) and path == "/":
            respond(response_out, 200, b"hello from componentize-py\n")
        elif isinstance(method, Method_Post) and path == "/echo":
            echo(request, response_out)
        else:
            respond(response_out, 404, b"not found\n")


def respond(response_out: ResponseOutparam, status: int, text: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with body.write() as out:
        out.blocking_write_and_flush(text)
    OutgoingBody.finish(body, None)


def echo(request: IncomingRequest, response_out: ResponseOutparam) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/octet-stream")]))
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    incoming = request.consume()
    with incoming.stream() as source, body.write() as sink:
        while True:
            try:
                chunk = source.blocking_read(CHUNK)
            except Err as e:
                if isinstance(e.value, StreamError_Closed):
                    break
                raise
            for i in range(0, len(chunk), WRITE):
                sink.blocking_write_and_flush(chunk[i : i + WRITE])
    OutgoingBody.finish(body, None)
