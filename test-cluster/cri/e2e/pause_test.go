package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The sandbox image `harness.sh up --cri` imports (nothing can be pulled here).
const pauseImage = "localhost/fabricks/pause:3"

// The pause image as sandbox and as container, with each runtime handler: CRI and CNI give the
// pod its address, network namespace, veth and log file. With `fabricks` the sandbox (a native
// binary) goes through our shim, which runs it with runc; one shim serves the whole pod, and
// only fabricks.io/* annotations reach the tasks' specs.
func TestPausePods(t *testing.T) {
	n := harness(t)
	for _, handler := range []string{"runc", "fabricks"} {
		t.Run(handler, func(t *testing.T) {
			p := n.startPod(t, podSpec{
				name: "pause-" + handler, handler: handler, image: pauseImage,
				podAnnotations: map[string]string{"fabricks.io/e2e": "pod-" + handler, "example.com/dropped": "yes"},
				ctrAnnotations: map[string]string{"fabricks.io/container": "yes"},
			})
			if !t.Run("running", func(t *testing.T) { pauseRunning(t, p) }) {
				return
			}
			t.Run("network", func(t *testing.T) { pauseNetwork(t, p) })
			t.Run("log_file", func(t *testing.T) { pauseLog(t, p) })
			t.Run("shim", func(t *testing.T) { pauseShim(t, p) })
			if handler == "fabricks" {
				t.Run("annotations", func(t *testing.T) { pauseAnnotations(t, p) })
			}
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
		})
	}
}

func pauseRunning(t *testing.T, p *pod) {
	p.expectRunning(t)
	r, err := p.n.cri.Runtime.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{Id: p.id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Items) != 1 || r.Items[0].State != cri.PodSandboxState_SANDBOX_READY || r.Items[0].RuntimeHandler != p.spec.handler {
		t.Errorf("ListPodSandbox gives %v, want the pod SANDBOX_READY with handler %s", r.Items, p.spec.handler)
	}
}

// The address is in the pod's own network namespace (under the harness's work dir), a veth
// joins it to the bridge, and the host reaches it.
func pauseNetwork(t *testing.T, p *pod) {
	if !strings.HasPrefix(p.netns, p.n.work+"/") {
		t.Errorf("the pod's netns %s is not under the harness's %s", p.netns, p.n.work)
	}
	out, err := exec.Command("nsenter", "--net="+p.netns, "ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter --net=%s ip addr: %v: %s", p.netns, err, out)
	}
	if !strings.Contains(string(out), " "+p.ip+"/") {
		t.Errorf("%s is not an address in the pod's netns: %s", p.ip, out)
	}
	if v := p.n.veths(); len(v) != p.vethsBefore+1 {
		t.Errorf("%d ports on %s, want %d (one more for the pod)", len(v), p.n.net.bridge, p.vethsBefore+1)
	}
	if out, err := exec.Command("ping", "-c1", "-W2", p.ip).CombinedOutput(); err != nil {
		t.Errorf("ping %s from the host: %v: %s", p.ip, err, out)
	}
}

func pauseLog(t *testing.T, p *pod) {
	if got := p.status(t).LogPath; got != p.logPath {
		t.Errorf("ContainerStatus.LogPath is %q, want %q (log_directory + log_path)", got, p.logPath)
	}
	if _, err := os.Stat(p.logPath); err != nil {
		t.Errorf("no CRI log file: %v", err)
	}
}

// runc's shim for runc; for fabricks ours, parent of the pause process, and the container's too.
func pauseShim(t *testing.T, p *pod) {
	s := p.theShim(t)
	want := map[string]string{"runc": "containerd-shim-runc-v2", "fabricks": "containerd-shim-fabricks-v1"}[p.spec.handler]
	if got := filepath.Base(s.args[0]); got != want {
		t.Fatalf("the pod's shim is %s, want %s", got, want)
	}
	if p.spec.handler != "fabricks" {
		return
	}
	var children []string
	for _, c := range procs() {
		if c.ppid == s.pid {
			children = append(children, strings.Join(c.args, " "))
		}
	}
	if !strings.Contains(strings.Join(children, "\n"), "/pause") {
		t.Errorf("no pause process is a child of our shim (pid %d); its children: %q", s.pid, children)
	}
}

// The handler's pod_annotations/container_annotations = ["fabricks.io/*"].
func pauseAnnotations(t *testing.T, p *pod) {
	if p.sandbox.Annotations["fabricks.io/e2e"] != "pod-fabricks" {
		t.Errorf("pod annotation fabricks.io/e2e missing from the sandbox's config.json")
	}
	if _, ok := p.sandbox.Annotations["example.com/dropped"]; ok {
		t.Errorf("pod annotation example.com/dropped reached the sandbox's config.json")
	}
	if p.container.Annotations["fabricks.io/container"] != "yes" {
		t.Errorf("container annotation fabricks.io/container missing from the container's config.json")
	}
	if p.container.Annotations["fabricks.io/e2e"] != "pod-fabricks" {
		t.Errorf("pod annotation fabricks.io/e2e missing from the container's config.json")
	}
}
