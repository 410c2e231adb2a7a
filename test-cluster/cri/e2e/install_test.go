package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// After the node installer (test-cluster/e2e-install.sh runs it on a fake host root whose config
// containerd then runs on): a pod with handler fabricks serves go-http, and the shim CRI starts
// for it is the binary the installer copied.
func TestInstalledShim(t *testing.T) {
	n := harness(t)
	shim := need(t, "FABRICKS_CRI_INSTALLED_SHIM", "the path where the installer put the shim")
	image := need(t, "FABRICKS_CRI_HTTP_IMAGE", "go-http, imported into k8s.io")
	p := n.startPod(t, podSpec{name: "installed-go-http", handler: "fabricks", image: image,
		podAnnotations: map[string]string{"fabricks.io/listen": "http=8080"}})
	if !t.Run("serves_from_the_installed_shim", func(t *testing.T) { servesFrom(t, p, shim) }) {
		return
	}
	t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
}

func servesFrom(t *testing.T, p *pod, shim string) {
	p.expectRunning(t)
	err := eventually(2*time.Minute, func() error {
		body, err := get(p.url("/"))
		if err == nil && !strings.Contains(body, "Hello from Fabricks") {
			err = fmt.Errorf("GET / answered %q", body)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s := p.theShim(t)
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.pid)); err != nil || exe != shim {
		t.Errorf("the pod's shim (pid %d) runs %q (%v), not the installed %s", s.pid, exe, err, shim)
	}
}

// Once uninstalled, the same containerd on the restored config has no such handler: the pod is
// refused, naming the handler, and nothing of it is left.
func TestHandlerRefused(t *testing.T) {
	n := harness(t)
	handler := need(t, "FABRICKS_CRI_REFUSED_HANDLER", "a runtime handler the config does not have")
	cfg := &cri.PodSandboxConfig{
		Metadata: &cri.PodSandboxMetadata{Name: "refused", Namespace: "fabricks-e2e", Uid: fmt.Sprintf("refused-%d", time.Now().UnixNano())},
		Linux:    &cri.LinuxPodSandboxConfig{},
	}
	r, err := n.cri.Runtime.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err == nil {
		p := &pod{n: n, id: r.PodSandboxId}
		_ = p.stopAndRemove(t)
		t.Fatalf("RunPodSandbox with handler %s succeeded (pod %s)", handler, short(r.PodSandboxId))
	}
	if !strings.Contains(err.Error(), handler) {
		t.Errorf("the refusal does not name the handler %s: %v", handler, err)
	}
	l, err := n.cri.Runtime.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Items {
		if p.Metadata.GetName() == "refused" {
			t.Errorf("the refused pod is listed: %s %s", short(p.Id), p.State)
		}
	}
}
