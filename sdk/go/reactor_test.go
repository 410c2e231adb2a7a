package fabricks

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// recordingHost plays the Fabricks host: it hands out a request body and
// records the response the handler sends through the ABI.
type recordingHost struct {
	body    *strings.Reader
	status  int
	headers string
	heads   int
	chunks  [][]byte
	gone    bool
}

func (h *recordingHost) readBody(p []byte) int32 {
	n, _ := h.body.Read(p)
	return int32(n)
}

func (h *recordingHost) sendHead(status int, headers string) int32 {
	h.status, h.headers = status, headers
	h.heads++
	return 0
}

func (h *recordingHost) writeBody(p []byte) int32 {
	if h.gone {
		return -1
	}
	h.chunks = append(h.chunks, bytes.Clone(p))
	return 0
}

func serveHead(t *testing.T, head, body string, h http.Handler) *recordingHost {
	t.Helper()
	host := &recordingHost{body: strings.NewReader(body)}
	serveReactor(host, []byte(head), h)
	if host.heads != 1 {
		t.Fatalf("the head was sent %d times, want once", host.heads)
	}
	return host
}

func TestTheRequestHeadBecomesARequest(t *testing.T) {
	var got *http.Request
	var body []byte
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		body, _ = io.ReadAll(r.Body)
	})
	serveHead(t, "PUT\n/echo?a=1&a=2\nHTTP/1.1\n10.0.0.1:4242\nhost: example\nx-test: one\nx-test: two\ncontent-length: 5", "hello", h)
	if got.Method != "PUT" || got.URL.Path != "/echo" || got.URL.Query()["a"][1] != "2" || got.RequestURI != "/echo?a=1&a=2" {
		t.Errorf("request line: %s %s (%s)", got.Method, got.URL, got.RequestURI)
	}
	if got.Proto != "HTTP/1.1" || got.ProtoMinor != 1 || got.RemoteAddr != "10.0.0.1:4242" {
		t.Errorf("proto %s, remote %s", got.Proto, got.RemoteAddr)
	}
	if got.Host != "example" || got.Header.Get("Host") != "" || strings.Join(got.Header["X-Test"], ",") != "one,two" {
		t.Errorf("host %q, headers %v", got.Host, got.Header)
	}
	if got.ContentLength != 5 || string(body) != "hello" {
		t.Errorf("content length %d, body %q", got.ContentLength, body)
	}
}

func TestASmallResponseGoesOutWholeWithItsLength(t *testing.T) {
	host := serveHead(t, "GET\n/\nHTTP/1.1\n1.2.3.4:5", "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-A", "b")
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "<html>short</html>")
	}))
	if host.status != http.StatusTeapot {
		t.Errorf("status %d", host.status)
	}
	for _, want := range []string{"X-A: b\n", "Content-Length: 18\n", "Content-Type: text/html; charset=utf-8\n"} {
		if !strings.Contains(host.headers, want) {
			t.Errorf("headers %q lack %q", host.headers, want)
		}
	}
	if len(host.chunks) != 1 || string(host.chunks[0]) != "<html>short</html>" {
		t.Errorf("body chunks %q", host.chunks)
	}
}

func TestFlushAndLargeBodiesStreamWithoutALength(t *testing.T) {
	host := serveHead(t, "GET\n/\nHTTP/1.1\n1.2.3.4:5", "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		http.NewResponseController(w).Flush()
		w.Write(make([]byte, 3*flushAt))
	}))
	if strings.Contains(host.headers, "Content-Length") || host.status != 200 {
		t.Errorf("a streamed response has status %d, headers %q", host.status, host.headers)
	}
	total := 0
	for _, c := range host.chunks {
		total += len(c)
	}
	if string(host.chunks[0]) != "first" || total != 5+3*flushAt || len(host.chunks) != 2 {
		t.Errorf("%d chunks, %d bytes, first %q", len(host.chunks), total, host.chunks[0])
	}
}

func TestAGoneClientFailsWritesAndFlushes(t *testing.T) {
	var writeErr, flushErr error
	host := &recordingHost{body: strings.NewReader(""), gone: true}
	serveReactor(host, []byte("GET\n/\nHTTP/1.1\n1.2.3.4:5"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "x")
		flushErr = http.NewResponseController(w).Flush()
		_, writeErr = io.WriteString(w, "y")
	}))
	if flushErr == nil || writeErr == nil {
		t.Errorf("flush error %v, write error %v; want both", flushErr, writeErr)
	}
}

func TestNoHandlerOrABadHeadIs500(t *testing.T) {
	if host := serveHead(t, "GET\n/\nHTTP/1.1\n1.2.3.4:5", "", nil); host.status != 500 {
		t.Errorf("no handler: %d", host.status)
	}
	if host := serveHead(t, "GET\n/", "", http.NotFoundHandler()); host.status != 500 {
		t.Errorf("a two-line head: %d", host.status)
	}
}

func TestHandleRecordsTheHandler(t *testing.T) {
	defer func(h http.Handler) { handler = h }(handler)
	h := http.NotFoundHandler()
	Handle(h)
	if handler == nil {
		t.Fatal("Handle did not record the handler")
	}
}
