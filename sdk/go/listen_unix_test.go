//go:build unix

package fabricks

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
)

// listenFD is what Listen runs on wasip1; natively it works on a descriptor
// just the same, so the lookup, the errors and the hand-over are tested here.
func TestListenFDTakesTheNamedDescriptor(t *testing.T) {
	t.Cleanup(func() {
		taken.Lock()
		delete(taken.names, "web")
		taken.Unlock()
	})
	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// A bare descriptor of its own, owned by nothing in this process, as the
	// shim hands it over (an *os.File would close it again when collected).
	f, err := host.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	host.Close()
	fds := fmt.Sprintf("admin=999,web=%d", fd)

	if _, err := listenFD(fds, "metrics"); err == nil ||
		!strings.Contains(err.Error(), `no listener named "metrics"`) ||
		!strings.Contains(err.Error(), "admin, web") {
		t.Fatalf("listenFD(metrics) = %v", err)
	}
	if _, err := listenFD("web", "web"); err == nil || !strings.Contains(err.Error(), "NAME=FD") {
		t.Fatalf("listenFD with a bad variable = %v", err)
	}
	if _, err := listenFD(fds, "admin"); err == nil || !strings.Contains(err.Error(), "descriptor 999") {
		t.Fatalf("listenFD(admin) on a closed descriptor = %v", err)
	}

	l, err := listenFD(fds, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dial(t, l)
	if _, err := listenFD(fds, "web"); err == nil || !strings.Contains(err.Error(), "already taken") {
		t.Fatalf("second listenFD(web) = %v", err)
	}
}
