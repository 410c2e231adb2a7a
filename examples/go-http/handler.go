package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

const (
	mib = 1 << 20
	// maxStreamMiB caps GET /stream?mb=N.
	maxStreamMiB = 1024
	// maxEchoBody caps the body /echo reads back.
	maxEchoBody = 1 * mib
	// streamChunk is how much /stream writes (and flushes) at a time.
	streamChunk = 64 << 10
	// patternPeriod: /stream's byte at offset i is byte(i % patternPeriod). A
	// prime, so the pattern never lines up with chunk or MiB boundaries and a
	// client can check every byte.
	patternPeriod = 251
)

// pattern holds one chunk plus a period of the stream pattern, so any chunk
// is a slice of it, whatever offset it starts at.
var pattern = func() []byte {
	b := make([]byte, streamChunk+patternPeriod)
	for i := range b {
		b[i] = byte(i % patternPeriod)
	}
	return b
}()

var started = time.Now()

// newHandler returns the service: every route, with one log line per request
// written to logTo.
func newHandler(logTo io.Writer) http.Handler {
	var requests atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "Hello from Fabricks! (%s/%s)\n", runtime.GOOS, runtime.GOARCH)
	})
	mux.HandleFunc("GET /json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"message":        "Hello from Fabricks!",
			"runtime":        runtime.GOOS + "/" + runtime.GOARCH,
			"go":             runtime.Version(),
			"time":           time.Now().UTC().Format(time.RFC3339Nano),
			"uptime_seconds": time.Since(started).Seconds(),
			"requests":       requests.Load(),
		})
	})
	mux.HandleFunc("GET /stream", stream)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	// A route that fails on purpose, to show what a failing handler costs: natively
	// net/http drops that connection; in reactor mode the request gets a 500 and the
	// host replaces the instance. Either way the next requests are served.
	mux.HandleFunc("GET /panic", func(w http.ResponseWriter, r *http.Request) {
		panic("go-http: /panic was requested")
	})
	return logRequests(logTo, &requests, mux)
}

// stream writes ?mb=N MiB (default 1, at most 1024) of the deterministic
// pattern, chunk by chunk, flushing each: memory stays flat whatever N is.
func stream(w http.ResponseWriter, r *http.Request) {
	n := 1
	if text := r.URL.Query().Get("mb"); text != "" {
		v, err := strconv.Atoi(text)
		if err != nil || v < 0 || v > maxStreamMiB {
			http.Error(w, fmt.Sprintf("mb must be a whole number from 0 to %d, got %q", maxStreamMiB, text), http.StatusBadRequest)
			return
		}
		n = v
	}
	total := int64(n) * mib
	w.Header().Set("Content-Type", "application/octet-stream")
	// No Content-Length: the body goes out chunked (HTTP/1.1) as it is written.
	w.Header().Set("X-Stream-Bytes", strconv.FormatInt(total, 10))
	w.Header().Set("X-Stream-Pattern", "byte i = i % 251")
	flush := http.NewResponseController(w)
	for sent := int64(0); sent < total; {
		size := min(int64(streamChunk), total-sent)
		start := sent % patternPeriod
		if _, err := w.Write(pattern[start : start+size]); err != nil {
			return // the client went away
		}
		if err := flush.Flush(); err != nil {
			return
		}
		sent += size
	}
}

// echo answers with what it was sent: method, path, query, headers, body.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEchoBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("body larger than %d bytes", maxEchoBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	headers := r.Header.Clone()
	if r.Host != "" {
		headers.Set("Host", r.Host) // Go keeps Host out of Header
	}
	reply := map[string]any{
		"method":     r.Method,
		"path":       r.URL.Path,
		"query":      r.URL.Query(),
		"headers":    headers,
		"body_bytes": len(body),
		"proto":      r.Proto,
		"remote":     r.RemoteAddr,
	}
	if utf8.Valid(body) {
		reply["body"] = string(body)
	} else {
		reply["body_base64"] = base64.StdEncoding.EncodeToString(body)
	}
	writeJSON(w, http.StatusOK, reply)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// logRequests writes one line per request once it is answered:
// time, remote address, method, URI, protocol, status, body bytes, duration.
func logRequests(out io.Writer, count *atomic.Int64, next http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, "%s %s %s %q %s %d %dB %s\n",
			start.UTC().Format(time.RFC3339), r.RemoteAddr, r.Method, r.URL.RequestURI(), r.Proto,
			rec.status, rec.bytes, time.Since(start).Round(time.Microsecond))
	})
}

// recorder notes the status and body size; Unwrap lets
// http.ResponseController reach the real writer's Flush.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(status int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = status, true
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
