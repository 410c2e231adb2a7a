package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"fabricks.dev/test-cluster/cri/client"
)

// What kubelet does with images pushed by `fabricks build --push`: PullImage for the node's
// platform (the index's linux entries; plain HTTP through the harness's hosts.toml), then pods
// with handler fabricks of what was pulled: go-http serves on its pod IP with the listen spec
// from the image's label (no annotation), go-hello's output reaches the CRI log and its exit
// code the container status.
func TestPull(t *testing.T) {
	n := harness(t)
	hello := need(t, "FABRICKS_CRI_PULL_HELLO", "a go-hello image reference in the test registry")
	server := need(t, "FABRICKS_CRI_PULL_HTTP", "a go-http image reference in the test registry")
	for _, ref := range []string{hello, server} {
		if !t.Run("pull_"+repoName(ref), func(t *testing.T) { pull(t, n, ref) }) {
			return
		}
	}
	t.Run("go-http", func(t *testing.T) {
		p := n.startPod(t, podSpec{name: "pulled-go-http", handler: "fabricks", image: server})
		if t.Run("serves_on_the_pod_IP", func(t *testing.T) { pulledServes(t, p) }) {
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		}
	})
	t.Run("go-hello", func(t *testing.T) {
		p := n.startPod(t, podSpec{name: "pulled-go-hello", handler: "fabricks", image: hello})
		if t.Run("greets_and_exits_0", func(t *testing.T) { exits(t, p, 0, "Hello from Fabricks!", "runtime: wasip1/wasm", "args: []") }) {
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		}
	})
	t.Run("go-hello_exit_7", func(t *testing.T) {
		p := n.startPod(t, podSpec{name: "pulled-go-hello-7", handler: "fabricks", image: hello, args: []string{"--exit", "7", "a b"}})
		if t.Run("exit_code_reaches_CRI", func(t *testing.T) { exits(t, p, 7, "Hello from Fabricks!", `args: ["a b"]`) }) {
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		}
	})
}

// repoName is a reference's repository's last part: 127.0.0.1:5000/examples/go-http:dev → go-http.
func repoName(ref string) string {
	ref = ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.IndexAny(ref, ":@"); i >= 0 {
		ref = ref[:i]
	}
	return ref
}

func pull(t *testing.T, n *node, ref string) {
	r, err := n.cri.Image.PullImage(ctx(t), &cri.PullImageRequest{Image: &cri.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("PullImage %s: %v", ref, err)
	}
	st, err := n.cri.Image.ImageStatus(ctx(t), &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus %s: %v", ref, err)
	}
	if st.Image == nil || st.Image.Id != r.ImageRef {
		t.Errorf("ImageStatus of %s is %v, want the pulled image %s", ref, st.Image, r.ImageRef)
	}
	t.Logf("pulled %s: %s", ref, r.ImageRef)
}

func pulledServes(t *testing.T, p *pod) {
	p.expectRunning(t)
	if err := eventually(2*time.Minute, func() error { _, err := get(p.url("/healthz")); return err }); err != nil {
		t.Fatal(err)
	}
	body, err := get(p.url("/json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ Runtime string }
	if err := json.Unmarshal([]byte(body), &j); err != nil || j.Runtime != "wasip1/wasm" {
		t.Errorf("GET /json answered %q, want runtime wasip1/wasm", body)
	}
}

// exits: the container exits with code, and its stdout in the CRI log holds every line.
func exits(t *testing.T, p *pod, code int32, lines ...string) {
	st := p.waitState(t, cri.ContainerState_CONTAINER_EXITED, 2*time.Minute)
	l, err := client.ReadLog(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode != code {
		t.Errorf("exit code %d (%s %s), want %d; log:\n%s%s", st.ExitCode, st.Reason, st.Message, code, l.Stdout, l.Stderr)
	}
	for _, want := range lines {
		if !strings.Contains(l.Stdout, want+"\n") {
			t.Errorf("stdout in the CRI log lacks the line %q; it holds:\n%s", want, l.Stdout)
		}
	}
}
