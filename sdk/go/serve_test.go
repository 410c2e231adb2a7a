//go:build !wasip1

package fabricks

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// slowServer serves a handler that answers "done" after delay, and reports
// when a request has arrived.
func slowServer(delay time.Duration) (*http.Server, chan struct{}) {
	arrived := make(chan struct{}, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		time.Sleep(delay)
		io.WriteString(w, "done")
	})}
	return srv, arrived
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// get runs a GET in the background and reports its body.
func get(url string) chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		out <- string(body)
	}()
	return out
}

func serve(ctx context.Context, srv *http.Server, l net.Listener) chan error {
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, l) }()
	return done
}

func wait[T any](t *testing.T, c chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestServeFinishesInFlightRequestsWhenTheContextEnds(t *testing.T) {
	srv, arrived := slowServer(300 * time.Millisecond)
	l := listenLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(ctx, srv, l)

	body := get("http://" + l.Addr().String() + "/")
	wait(t, arrived, "the request")
	cancel()
	if got := wait(t, body, "the response"); got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := wait(t, done, "Serve"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("still accepting after the stop")
	}
}

// What the host does to a wasm module on SIGTERM, natively: the listener goes
// away under the server.
func TestServeStopsGracefullyWhenTheListenerCloses(t *testing.T) {
	srv, arrived := slowServer(300 * time.Millisecond)
	l := listenLocal(t)
	done := serve(context.Background(), srv, l)

	body := get("http://" + l.Addr().String() + "/")
	wait(t, arrived, "the request")
	l.Close()
	if got := wait(t, body, "the response"); got != "done" {
		t.Fatalf("in-flight request got %q", got)
	}
	if err := wait(t, done, "Serve"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

func TestServeStopsOnSIGTERM(t *testing.T) {
	srv, _ := slowServer(0)
	l := listenLocal(t)
	done := serve(context.Background(), srv, l)
	// Serve installs its handler before serving; wait until it serves.
	if got := wait(t, get("http://"+l.Addr().String()+"/"), "the first response"); got != "done" {
		t.Fatalf("got %q", got)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done, "Serve"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

func TestServeCutsOffRequestsAfterTheTimeout(t *testing.T) {
	old := ShutdownTimeout
	ShutdownTimeout = 100 * time.Millisecond
	defer func() { ShutdownTimeout = old }()

	srv, arrived := slowServer(3 * time.Second)
	l := listenLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := serve(ctx, srv, l)
	body := get("http://" + l.Addr().String() + "/")
	wait(t, arrived, "the request")
	start := time.Now()
	cancel()
	err := wait(t, done, "Serve")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Serve = %v, want a deadline error", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Serve took %v to give up", took)
	}
	if got := wait(t, body, "the cut-off response"); got == "done" {
		t.Fatal("the slow request finished after all")
	}
}

func TestServeReportsOtherFailures(t *testing.T) {
	srv, _ := slowServer(0)
	srv.Close() // Serve on a closed server fails at once with ErrServerClosed: still a stop.
	if err := Serve(context.Background(), srv, listenLocal(t)); err != nil {
		t.Fatalf("Serve on a closed server = %v", err)
	}
	srv2, _ := slowServer(0)
	broken := failingListener{listenLocal(t)}
	defer broken.Close()
	err := Serve(context.Background(), srv2, broken)
	if err == nil || !errors.Is(err, errBroken) {
		t.Fatalf("Serve on a failing listener = %v", err)
	}
}

var errBroken = errors.New("broken listener")

type failingListener struct{ net.Listener }

func (failingListener) Accept() (net.Conn, error) { return nil, errBroken }
