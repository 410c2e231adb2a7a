//go:build wasip1 && go1.24 && fabricks_reactor

package fabricks

// The module side of the Fabricks HTTP reactor ABI, version 1
// (docs/reactor-abi.md). Only in reactor builds (fabricks build --mode reactor
// passes -buildmode=c-shared -tags fabricks_reactor): a command module must
// import nothing beyond WASI. The host calls fabricks_http_alloc for a buffer,
// writes the request head into it, then calls fabricks_http_handle; the
// handler reads the body and writes the response through the host imports.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unsafe"
)

// ABIVersion is the version of the reactor ABI this package implements.
const ABIVersion = 1

// flushAt: buffered body bytes that make the response go out chunked instead
// of whole with a Content-Length.
const flushAt = 64 << 10

//go:wasmimport fabricks_http request_read
func requestRead(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport fabricks_http response_head
func responseHead(status uint32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport fabricks_http response_write
func responseWrite(ptr unsafe.Pointer, n uint32) int32

// headBuf holds the request head the host writes; a package variable, so the
// (non-moving) garbage collector keeps it where the host was told it is.
var headBuf = make([]byte, 4096)

//go:wasmexport fabricks_http_abi_version
func abiVersion() uint32 { return ABIVersion }

//go:wasmexport fabricks_http_alloc
func alloc(n uint32) uint32 {
	if int(n) > len(headBuf) {
		headBuf = make([]byte, n)
	}
	return uint32(uintptr(unsafe.Pointer(&headBuf[0])))
}

//go:wasmexport fabricks_http_handle
func handle(n uint32) uint32 {
	w := &responseWriter{header: http.Header{}}
	r, err := parseHead(headBuf[:n])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fabricks: bad request head from the host:", err)
		http.Error(w, "bad request head", http.StatusInternalServerError)
	} else if handler == nil {
		http.Error(w, "fabricks: no handler registered (call fabricks.Handle in an init function)", http.StatusInternalServerError)
	} else {
		handler.ServeHTTP(w, r)
	}
	w.finish()
	return 0
}

// parseHead reads the head: method, request target, protocol, remote
// address, one line each, then header lines "Name: value".
func parseHead(head []byte) (*http.Request, error) {
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
		name, value, ok := strings.Cut(line, ": ")
		if ok {
			r.Header.Add(name, value)
		}
	}
	// As net/http's server does: Host moves out of Header.
	r.Host = r.Header.Get("Host")
	r.Header.Del("Host")
	r.ContentLength = -1
	if cl := r.Header.Get("Content-Length"); cl != "" {
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil {
			r.ContentLength = v
		}
	}
	if r.ContentLength == 0 || (r.ContentLength < 0 && r.Header.Get("Transfer-Encoding") == "") {
		r.ContentLength = 0
		r.Body = http.NoBody
	} else {
		r.Body = io.NopCloser(bufio.NewReaderSize(bodyReader{}, 32<<10))
	}
	return r, nil
}

type bodyReader struct{}

func (bodyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := requestRead(unsafe.Pointer(&p[0]), uint32(len(p)))
	switch {
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
	if w.gone {
		return io.ErrClosedPipe
	}
	if w.buf.Len() > 0 {
		b := w.buf.Bytes()
		if responseWrite(unsafe.Pointer(&b[0]), uint32(len(b))) != 0 {
			w.gone = true
		}
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
	s := head.String()
	var p unsafe.Pointer
	if len(s) > 0 {
		p = unsafe.Pointer(unsafe.StringData(s))
	}
	if responseHead(uint32(w.status), p, uint32(len(s))) != 0 {
		w.gone = true
	}
}

// finish sends what the handler left: the whole response with its length
// when nothing was sent yet.
func (w *responseWriter) finish() {
	if !w.headSent && w.header.Get("Content-Length") == "" && w.header.Get("Transfer-Encoding") == "" {
		w.header.Set("Content-Length", strconv.Itoa(w.buf.Len()))
	}
	w.flush()
}
