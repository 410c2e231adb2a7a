package fabricks

// The platform-independent part of the reactor ABI (docs/reactor-abi.md):
// reading the request head the host writes, and a ResponseWriter over the
// host's response functions. The wasm exports and imports that use them are
// in reactor_wasip1.go.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// ABIVersion is the version of the reactor ABI this package implements.
const ABIVersion = 1

// flushAt: buffered body bytes that make the response go out chunked instead
// of whole with a Content-Length.
const flushAt = 64 << 10

// reactorHost is what a request needs of the host: the ABI's imports.
type reactorHost interface {
	// readBody: n > 0 bytes read, 0 at the end, < 0 on failure.
	readBody(p []byte) int32
	// sendHead and writeBody: 0, or < 0 when the client is gone.
	sendHead(status int, headers string) int32
	writeBody(p []byte) int32
}

// serveReactor serves one request: head as the host encoded it, h the
// registered handler.
func serveReactor(host reactorHost, head []byte, h http.Handler) {
	w := &responseWriter{host: host, header: http.Header{}}
	r, err := parseHead(head, host)
	switch {
	case err != nil:
		http.Error(w, "fabricks: bad request head from the host: "+err.Error(), http.StatusInternalServerError)
	case h == nil:
		http.Error(w, "fabricks: no handler registered (call fabricks.Handle in an init function)", http.StatusInternalServerError)
	default:
		h.ServeHTTP(w, r)
	}
	w.finish()
}

// parseHead reads the head: method, request target, protocol, client
// address, one line each, then header lines "name: value".
func parseHead(head []byte, host reactorHost) (*http.Request, error) {
	lines := strings.Split(string(head), "\n")
	if len(lines) < 4 {
		return nil, fmt.Errorf("%d lines, want at least 4", len(lines))
	}
	u, err := url.ParseRequestURI(lines[1])
	if err != nil {
		return nil, err
	}
	major, minor, ok := http.ParseHTTPVersion(lines[2])
	if !ok {
		return nil, fmt.Errorf("bad protocol %q", lines[2])
	}
	r := &http.Request{
		Method: lines[0], URL: u, RequestURI: lines[1],
		Proto: lines[2], ProtoMajor: major, ProtoMinor: minor,
		RemoteAddr: lines[3], Header: http.Header{},
	}
	for _, line := range lines[4:] {
		if name, value, ok := strings.Cut(line, ": "); ok {
			r.Header.Add(name, value)
		}
	}
	// As net/http's server does: Host moves out of Header.
	r.Host = r.Header.Get("Host")
	r.Header.Del("Host")
	r.ContentLength = 0
	if cl := r.Header.Get("Content-Length"); cl != "" {
		if r.ContentLength, err = strconv.ParseInt(cl, 10, 64); err != nil {
			return nil, fmt.Errorf("bad Content-Length %q", cl)
		}
	} else if r.Header.Get("Transfer-Encoding") != "" {
		r.ContentLength = -1
	}
	r.Body = http.NoBody
	if r.ContentLength != 0 {
		r.Body = io.NopCloser(bufio.NewReaderSize(bodyReader{host}, 32<<10))
	}
	return r, nil
}

type bodyReader struct{ host reactorHost }

func (b bodyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	switch n := b.host.readBody(p); {
	case n > 0:
		return int(n), nil
	case n == 0:
		return 0, io.EOF
	default:
		return 0, fmt.Errorf("fabricks: reading the request body failed (the client went away or timed out)")
	}
}

// responseWriter buffers the body so that small responses go out whole, with
// a Content-Length; Flush or a large body sends it in chunks.
type responseWriter struct {
	host     reactorHost
	header   http.Header
	status   int
	headSent bool
	buf      bytes.Buffer
	gone     bool
}

func (w *responseWriter) Header() http.Header { return w.header }

func (w *responseWriter) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.gone {
		return 0, io.ErrClosedPipe
	}
	w.WriteHeader(http.StatusOK)
	w.buf.Write(b)
	if w.buf.Len() >= flushAt {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (w *responseWriter) Flush() { w.flush() }

// FlushError lets http.ResponseController report a client that went away.
func (w *responseWriter) FlushError() error { return w.flush() }

func (w *responseWriter) flush() error {
	w.sendHead()
	if !w.gone && w.buf.Len() > 0 {
		w.gone = w.host.writeBody(w.buf.Bytes()) != 0
		w.buf.Reset()
	}
	if w.gone {
		return io.ErrClosedPipe
	}
	return nil
}

func (w *responseWriter) sendHead() {
	if w.headSent {
		return
	}
	w.headSent = true
	w.WriteHeader(http.StatusOK)
	if w.header.Get("Content-Type") == "" && w.buf.Len() > 0 {
		w.header.Set("Content-Type", http.DetectContentType(w.buf.Bytes()))
	}
	var head strings.Builder
	for name, values := range w.header {
		for _, v := range values {
			head.WriteString(name + ": " + v + "\n")
		}
	}
	w.gone = w.host.sendHead(w.status, head.String()) != 0
}

// finish sends what the handler left: the whole response with its length
// when nothing was sent yet.
func (w *responseWriter) finish() {
	if !w.headSent && w.header.Get("Content-Length") == "" && w.header.Get("Transfer-Encoding") == "" {
		w.header.Set("Content-Length", strconv.Itoa(w.buf.Len()))
	}
	w.flush()
}
