package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// syncBuffer collects the request log; handlers write it from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func server(t *testing.T) (*httptest.Server, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	srv := httptest.NewServer(newHandler(log))
	t.Cleanup(srv.Close)
	return srv, log
}

func do(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

func TestRoot(t *testing.T) {
	srv, _ := server(t)
	resp, body := do(t, "GET", srv.URL+"/", nil, nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "Hello from Fabricks!") {
		t.Fatalf("GET / = %d %q", resp.StatusCode, body)
	}
	if !strings.Contains(string(body), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("GET / does not name the platform: %q", body)
	}
	if resp, _ := do(t, "GET", srv.URL+"/nope", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET /nope = %d", resp.StatusCode)
	}
	if resp, _ := do(t, "POST", srv.URL+"/", nil, nil); resp.StatusCode != 405 {
		t.Errorf("POST / = %d", resp.StatusCode)
	}
}

func TestJSON(t *testing.T) {
	srv, _ := server(t)
	resp, body := do(t, "GET", srv.URL+"/json", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /json = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got["message"] != "Hello from Fabricks!" || got["runtime"] != runtime.GOOS+"/"+runtime.GOARCH ||
		got["go"] != runtime.Version() {
		t.Errorf("GET /json = %s", body)
	}
	for _, key := range []string{"time", "uptime_seconds", "requests"} {
		if _, ok := got[key]; !ok {
			t.Errorf("GET /json lacks %q: %s", key, body)
		}
	}
}

func checkPattern(t *testing.T, body []byte) {
	t.Helper()
	for i, b := range body {
		if b != byte(i%251) {
			t.Fatalf("byte %d is %d, want %d", i, b, i%251)
		}
	}
}

func TestStream(t *testing.T) {
	srv, _ := server(t)
	for _, tc := range []struct {
		query string
		bytes int
	}{{"", 1 << 20}, {"?mb=0", 0}, {"?mb=3", 3 << 20}} {
		resp, body := do(t, "GET", srv.URL+"/stream"+tc.query, nil, nil)
		if resp.StatusCode != 200 || len(body) != tc.bytes {
			t.Fatalf("GET /stream%s = %d, %d bytes, want %d", tc.query, resp.StatusCode, len(body), tc.bytes)
		}
		if tc.bytes > 0 && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked") {
			t.Errorf("GET /stream%s is not chunked: %v", tc.query, resp.TransferEncoding)
		}
		checkPattern(t, body)
	}
	for _, bad := range []string{"-1", "1025", "x", "1.5"} {
		if resp, _ := do(t, "GET", srv.URL+"/stream?mb="+bad, nil, nil); resp.StatusCode != 400 {
			t.Errorf("GET /stream?mb=%s = %d, want 400", bad, resp.StatusCode)
		}
	}
}

// 100 MiB through the handler: streamed, every byte checked as it arrives.
func TestStreamLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB; skipped with -short")
	}
	srv, _ := server(t)
	resp, err := http.Get(srv.URL + "/stream?mb=100")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n int
	buf := make([]byte, 1<<20)
	for {
		k, err := resp.Body.Read(buf)
		for i := 0; i < k; i++ {
			if buf[i] != byte((n+i)%251) {
				t.Fatalf("byte %d is %d", n+i, buf[i])
			}
		}
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 100<<20 {
		t.Fatalf("got %d bytes", n)
	}
}

func TestEcho(t *testing.T) {
	srv, _ := server(t)
	resp, body := do(t, "PUT", srv.URL+"/echo?a=1&a=2&b=x%20y", strings.NewReader(`{"hello":"fabricks"}`),
		http.Header{"X-Test": {"one", "two"}, "Content-Type": {"application/json"}})
	if resp.StatusCode != 200 {
		t.Fatalf("PUT /echo = %d %s", resp.StatusCode, body)
	}
	var got struct {
		Method     string              `json:"method"`
		Path       string              `json:"path"`
		Query      map[string][]string `json:"query"`
		Headers    map[string][]string `json:"headers"`
		Body       *string             `json:"body"`
		BodyBase64 *string             `json:"body_base64"`
		BodyBytes  int                 `json:"body_bytes"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if got.Method != "PUT" || got.Path != "/echo" || got.BodyBytes != 20 ||
		got.Body == nil || *got.Body != `{"hello":"fabricks"}` {
		t.Errorf("PUT /echo = %s", body)
	}
	if strings.Join(got.Query["a"], ",") != "1,2" || strings.Join(got.Query["b"], ",") != "x y" {
		t.Errorf("query = %v", got.Query)
	}
	if strings.Join(got.Headers["X-Test"], ",") != "one,two" ||
		got.Headers["Content-Type"][0] != "application/json" || len(got.Headers["Host"]) != 1 {
		t.Errorf("headers = %v", got.Headers)
	}

	// Any method; binary bodies come back as base64.
	_, body = do(t, "DELETE", srv.URL+"/echo", nil, nil)
	if err := json.Unmarshal(body, &got); err != nil || got.Method != "DELETE" || got.BodyBytes != 0 {
		t.Errorf("DELETE /echo = %s", body)
	}
	_, body = do(t, "PATCH", srv.URL+"/echo", bytes.NewReader([]byte{0xff, 0x00, 0xfe}), nil)
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.Method != "PATCH" || got.BodyBase64 == nil || *got.BodyBase64 != "/wD+" {
		t.Errorf("PATCH /echo with a binary body = %s", body)
	}

	resp, _ = do(t, "POST", srv.URL+"/echo", bytes.NewReader(make([]byte, maxEchoBody+1)), nil)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST /echo with %d bytes = %d", maxEchoBody+1, resp.StatusCode)
	}
}

func TestHealthz(t *testing.T) {
	srv, _ := server(t)
	resp, body := do(t, "GET", srv.URL+"/healthz", nil, nil)
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz = %d %q", resp.StatusCode, body)
	}
}

func TestOneLogLinePerRequest(t *testing.T) {
	srv, log := server(t)
	do(t, "GET", srv.URL+"/healthz", nil, nil)
	do(t, "GET", srv.URL+"/stream?mb=1", nil, nil)
	do(t, "POST", srv.URL+"/echo?x=1", strings.NewReader("hi"), nil)
	do(t, "GET", srv.URL+"/missing", nil, nil)
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines:\n%s", len(lines), log)
	}
	for i, want := range []string{
		`GET "/healthz" HTTP/1.1 200 3B`,
		`GET "/stream?mb=1" HTTP/1.1 200 1048576B`,
		`POST "/echo?x=1" HTTP/1.1 200 `,
		`GET "/missing" HTTP/1.1 404 `,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("log line %d = %q, want %q in it", i, lines[i], want)
		}
	}
}

// TestBuildsForWasip1 builds the program as fabricks build does, in both modes:
// a command, and a reactor (fabricks build --mode reactor).
func TestBuildsForWasip1(t *testing.T) {
	if testing.Short() || runtime.GOOS == "wasip1" {
		t.Skip("cross-compiles; skipped with -short")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	for _, mode := range [][]string{nil, {"-buildmode=c-shared", "-tags", "fabricks_reactor"}} {
		args := append([]string{"build", "-trimpath"}, mode...)
		cmd := exec.Command(gotool, append(args, "-o", t.TempDir()+"/go-http.wasm", ".")...)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("GOOS=wasip1 GOARCH=wasm go %v: %v\n%s", args, err, out)
		}
	}
}

// /panic fails only its own request: net/http drops that connection, and the
// server goes on serving.
func TestPanicFailsOnlyItsRequest(t *testing.T) {
	srv, _ := server(t)
	srv.Config.ErrorLog = nil
	if resp, err := http.Get(srv.URL + "/panic"); err == nil {
		resp.Body.Close()
		t.Fatalf("GET /panic = %d, want a dropped connection", resp.StatusCode)
	}
	if resp, body := do(t, "GET", srv.URL+"/healthz", nil, nil); resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("GET /healthz after /panic = %d %q", resp.StatusCode, body)
	}
}
