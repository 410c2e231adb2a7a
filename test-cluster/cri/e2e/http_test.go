package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"fabricks.dev/test-cluster/cri/client"
)

// go-http (examples/go-http) as a pod with handler fabricks and the listen annotation, built
// as a command module and as a reactor (served by the shim's pool; the pod asks for 2
// instances): it serves on the pod IP to a Go HTTP client, its request log is the container's
// CRI log, StopContainer ends it with exit 0, and removing the pod leaves nothing.
func TestGoHTTP(t *testing.T) {
	n := harness(t)
	for _, mode := range []struct{ name, env string }{
		{"command", "FABRICKS_CRI_HTTP_IMAGE"},
		{"reactor", "FABRICKS_CRI_REACTOR_IMAGE"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			image := need(t, mode.env, "go-http built as "+mode.name+", imported into k8s.io")
			if !t.Run("image_listed", func(t *testing.T) { expectListed(t, n, image) }) {
				return
			}
			annotations := map[string]string{"fabricks.io/listen": "http=8080"}
			if mode.name == "reactor" {
				annotations["fabricks.io/instances"] = "2"
			}
			p := n.startPod(t, podSpec{name: "go-http-" + mode.name, handler: "fabricks", image: image, podAnnotations: annotations})
			if !t.Run("running", func(t *testing.T) { httpRunning(t, p) }) {
				return
			}
			t.Run("serves", func(t *testing.T) { httpServes(t, p) })
			t.Run("logs", func(t *testing.T) { httpLogs(t, p, mode.name) })
			t.Run("stop_container", func(t *testing.T) { stopContainer(t, p) })
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		})
	}
}

// expectListed: CRI's ListImages has the image (imported with ctr into k8s.io: CRI sees it
// after its event, asynchronously).
func expectListed(t *testing.T, n *node, image string) {
	err := eventually(10*time.Second, func() error {
		r, err := n.cri.Image.ListImages(ctx(t), &cri.ListImagesRequest{})
		if err != nil {
			return err
		}
		for _, i := range r.Images {
			for _, tag := range i.RepoTags {
				if tag == image {
					return nil
				}
			}
		}
		return fmt.Errorf("CRI does not list %s", image)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func httpRunning(t *testing.T, p *pod) {
	p.expectRunning(t)
	if s := p.theShim(t); filepath.Base(s.args[0]) != "containerd-shim-fabricks-v1" {
		t.Errorf("the pod's shim is %s, not ours", s.args[0])
	}
	// A bound for hangs: the module is compiled at its first start, on a busy machine.
	if err := eventually(2*time.Minute, func() error { _, err := get(p.url("/healthz")); return err }); err != nil {
		t.Fatal(err)
	}
}

func (p *pod) url(path string) string { return "http://" + p.ip + ":8080" + path }

var web = &http.Client{Timeout: time.Minute}

// get fetches url and wants 200; the body.
func get(url string) (string, error) {
	r, err := web.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the body: %w", url, err)
	}
	if r.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, r.Status)
	}
	return string(b), nil
}

func httpServes(t *testing.T, p *pod) {
	body, err := get(p.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(body) != "Hello from Fabricks! (wasip1/wasm)" {
		t.Errorf("GET / answered %q", body)
	}
	body, err = get(p.url("/json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Runtime, Message, Go string }
	if err := json.Unmarshal([]byte(body), &j); err != nil || j.Runtime != "wasip1/wasm" || j.Message != "Hello from Fabricks!" || !strings.HasPrefix(j.Go, "go") {
		t.Errorf("GET /json answered %q (%v), want runtime wasip1/wasm", body, err)
	}
	if err := expectStream(p.url("/stream?mb=10"), 10); err != nil {
		t.Error(err)
	}
}

// expectStream: GET url answers mib MiB of go-http's /stream content, byte i being i % 251.
func expectStream(url string, mib int) error {
	r, err := web.Get(url)
	if err != nil {
		return err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, r.Status)
	}
	br := bufio.NewReaderSize(r.Body, 1<<16)
	n := 0
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("GET %s: after %d bytes: %w", url, n, err)
		}
		if b != byte(n%251) {
			return fmt.Errorf("GET %s: byte %d is %d, want %d (i %% 251)", url, n, b, n%251)
		}
		n++
	}
	if n != mib<<20 {
		return fmt.Errorf("GET %s: %d bytes, want %d", url, n, mib<<20)
	}
	return nil
}

// The request lines reach the CRI log. A reactor's main never runs, so only the command
// build says it listens; the reactor's shim logs the pool size the annotation asked for.
func httpLogs(t *testing.T, p *pod, mode string) {
	lines := []string{`GET "/" HTTP/1.1 200`, `GET "/json" HTTP/1.1 200`, `GET "/stream?mb=10" HTTP/1.1 200 10485760B`}
	if mode == "command" {
		lines = append(lines, "go-http: listening")
	}
	err := eventually(10*time.Second, func() error {
		l, err := client.ReadLog(p.logPath)
		if err != nil {
			return err
		}
		for _, want := range lines {
			if !strings.Contains(l.Stdout+l.Stderr, want) {
				return fmt.Errorf("the CRI log lacks %q; it holds:\n%s%s", want, l.Stdout, l.Stderr)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if mode == "reactor" {
		b, _ := os.ReadFile(filepath.Join(p.n.work, "containerd.log"))
		if !strings.Contains(string(b), "reactor with 2 instances") {
			t.Errorf("the shim log does not show the 2 instances of fabricks.io/instances")
		}
	}
}

// kubelet's order: StopContainer (SIGTERM, SIGKILL after the grace period), then the pod. On
// failure, which of the container's stdio FIFOs the pod's shim still holds open (containerd
// waits for their EOF before it deletes an exited task).
func stopContainer(t *testing.T, p *pod) {
	shim := p.n.shims(p.id)
	if _, err := p.n.cri.Runtime.StopContainer(ctx(t), &cri.StopContainerRequest{ContainerId: p.cid, Timeout: 10}); err != nil {
		var fifos []string
		if len(shim) > 0 {
			fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", shim[0].pid))
			for _, fd := range fds {
				if l, _ := os.Readlink(fd); strings.Contains(l, "/"+p.cid+"/io/") {
					fifos = append(fifos, filepath.Base(l))
				}
			}
		}
		t.Fatalf("StopContainer: %v; FIFOs of the container the pod's shim still holds open: %v", err, fifos)
	}
	if st := p.status(t); st.State != cri.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
		t.Errorf("after StopContainer the container is %s with exit code %d (%s), want CONTAINER_EXITED 0", st.State, st.ExitCode, st.Reason)
	}
}
