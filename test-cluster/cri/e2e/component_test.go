package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The wasi:http services of test-cluster/components (componentize-py, componentize-js) as pods
// with handler fabricks and no listen spec at all: the shim serves them on its default port
// 8080, on the pod IP, to a Go HTTP client; a 10 MiB POST /echo comes back byte for byte;
// StopContainer ends them with exit 0 and removing the pod leaves nothing.
func TestComponentHTTP(t *testing.T) {
	n := harness(t)
	for _, c := range []struct{ name, env, greeting string }{
		{"py", "FABRICKS_CRI_PY_HTTP_IMAGE", "hello from componentize-py"},
		{"js", "FABRICKS_CRI_JS_HTTP_IMAGE", "componentize-js"},
	} {
		t.Run(c.name, func(t *testing.T) {
			image := need(t, c.env, "the "+c.name+"-http component packed by fabricks build, imported into k8s.io")
			if !t.Run("image_listed", func(t *testing.T) { expectListed(t, n, image) }) {
				return
			}
			p := n.startPod(t, podSpec{name: c.name + "-http", handler: "fabricks", image: image})
			if !t.Run("running", func(t *testing.T) { componentRunning(t, p) }) {
				return
			}
			t.Run("serves", func(t *testing.T) {
				body, err := get(p.url("/"))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(body, c.greeting) {
					t.Errorf("GET / answered %q, want %q", body, c.greeting)
				}
			})
			t.Run("echo_10mib", func(t *testing.T) {
				if err := expectEcho(p.url("/echo"), 10<<20); err != nil {
					t.Error(err)
				}
			})
			t.Run("stop_container", func(t *testing.T) { stopContainer(t, p) })
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		})
	}
}

// componentRunning: the pod runs on our shim and answers GET / (the components have no
// /healthz); the bound is for the first start, which compiles the component.
func componentRunning(t *testing.T, p *pod) {
	p.expectRunning(t)
	if s := p.theShim(t); filepath.Base(s.args[0]) != "containerd-shim-fabricks-v1" {
		t.Errorf("the pod's shim is %s, not ours", s.args[0])
	}
	if err := eventually(2*time.Minute, func() error { _, err := get(p.url("/")); return err }); err != nil {
		t.Fatal(err)
	}
}

// expectEcho POSTs size random bytes to url and wants them back, compared by sha256.
func expectEcho(url string, size int) error {
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		return err
	}
	r, err := web.Post(url, "application/octet-stream", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", url, r.Status)
	}
	h := sha256.New()
	got, err := io.Copy(h, r.Body)
	if err != nil {
		return fmt.Errorf("POST %s: reading the echo after %d bytes: %w", url, got, err)
	}
	if want := sha256.Sum256(payload); got != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("POST %s: %d bytes came back, not the %d sent (or other bytes)", url, got, size)
	}
	return nil
}
