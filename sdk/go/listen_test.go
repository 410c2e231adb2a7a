//go:build !wasip1

package fabricks

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
)

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func dial(t *testing.T, l net.Listener) {
	t.Helper()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

func TestListenOrFallsBackWithoutASpec(t *testing.T) {
	for _, value := range []string{"", "  "} {
		t.Setenv(EnvListen, value)
		l, err := ListenOr("http", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Addr().(*net.TCPAddr).IP.String(); got != "127.0.0.1" {
			t.Errorf("fallback listener on %s", l.Addr())
		}
		dial(t, l)
		l.Close()
	}
}

func TestListenOrPrefersTheSpec(t *testing.T) {
	port := freePort(t)
	t.Setenv(EnvListen, fmt.Sprintf("admin=127.0.0.1:%d,http=127.0.0.1:%d", freePort(t), port))
	l, err := ListenOr("http", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Addr().(*net.TCPAddr).Port; got != port {
		t.Fatalf("listening on %d, the spec says %d", got, port)
	}
	dial(t, l)

	// A spec that lacks the name is an error, not a reason to fall back.
	if _, err := ListenOr("metrics", "127.0.0.1:0"); err == nil ||
		!strings.Contains(err.Error(), `no listener named "metrics"`) ||
		!strings.Contains(err.Error(), "admin, http") {
		t.Fatalf("ListenOr(metrics) = %v", err)
	}
}

func TestListenNeedsASpec(t *testing.T) {
	t.Setenv(EnvListen, "")
	_, err := Listen("http")
	if err == nil || !strings.Contains(err.Error(), EnvListen+" is not set") {
		t.Fatalf("Listen without a spec = %v", err)
	}
	t.Setenv(EnvListen, "http=0")
	_, err = Listen("http")
	if err == nil || !strings.Contains(err.Error(), `listen entry "http=0"`) {
		t.Fatalf("Listen with a bad spec = %v", err)
	}
	port := freePort(t)
	t.Setenv(EnvListen, "http=127.0.0.1:"+strconv.Itoa(port))
	l, err := Listen("http")
	if err != nil {
		t.Fatal(err)
	}
	dial(t, l)
	l.Close()
}
