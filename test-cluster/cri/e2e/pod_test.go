package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI's namespace in containerd, for both flavours.
const criNamespace = "k8s.io"

// podSpec is a pod of one container, as a test asks for it.
type podSpec struct {
	name           string
	handler        string // runtime handler; "" is containerd's default (runc)
	image          string
	args           []string // the container's args (the image's entrypoint stays)
	podAnnotations map[string]string
	ctrAnnotations map[string]string
	mounts         []*cri.Mount // as kubelet passes volumes: host directories bound into the container
}

// pod is a started pod: CRI's ids and what containerd made for it.
type pod struct {
	n                  *node
	spec               podSpec
	id, cid            string
	ip                 string
	netns              string // the pod's network namespace: a bind mount under $W
	logPath            string // the container's CRI log
	vethsBefore        int    // ports on the harness's bridge before the pod
	sandbox, container ociSpec
	removed            bool
}

// ociSpec is what the tests read of a task's config.json.
type ociSpec struct {
	Annotations map[string]string `json:"annotations"`
	Linux       struct {
		CgroupsPath string `json:"cgroupsPath"`
		Namespaces  []struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"namespaces"`
	} `json:"linux"`
}

// startPod runs RunPodSandbox, CreateContainer and StartContainer as kubelet does. The pod is
// stopped and removed when t ends if the test has not done it itself.
func (n *node) startPod(t *testing.T, s podSpec) *pod {
	t.Helper()
	p := &pod{n: n, spec: s, vethsBefore: len(n.veths())}
	uid := fmt.Sprintf("%s-%d", s.name, time.Now().UnixNano())
	logDir := filepath.Join(n.work, "pods", uid)
	cfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: s.name, Namespace: "fabricks-e2e", Uid: uid},
		LogDirectory: logDir,
		Annotations:  s.podAnnotations,
		Linux:        &cri.LinuxPodSandboxConfig{},
	}
	r, err := n.cri.Runtime.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: cfg, RuntimeHandler: s.handler})
	if err != nil {
		t.Fatalf("RunPodSandbox (handler %q): %v", s.handler, err)
	}
	p.id = r.PodSandboxId
	t.Cleanup(func() {
		if !p.removed {
			p.stopAndRemove(t)
		}
	})
	c, err := n.cri.Runtime.CreateContainer(ctx(t), &cri.CreateContainerRequest{
		PodSandboxId: p.id,
		Config: &cri.ContainerConfig{
			Metadata:    &cri.ContainerMetadata{Name: s.name},
			Image:       &cri.ImageSpec{Image: s.image},
			Args:        s.args,
			LogPath:     s.name + ".log",
			Annotations: s.ctrAnnotations,
			Mounts:      s.mounts,
			Linux:       &cri.LinuxContainerConfig{},
		},
		SandboxConfig: cfg,
	})
	if err != nil {
		t.Fatalf("CreateContainer of %s in pod %s: %v", s.image, short(p.id), err)
	}
	p.cid = c.ContainerId
	p.logPath = filepath.Join(logDir, s.name+".log")
	if _, err := n.cri.Runtime.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: p.cid}); err != nil {
		t.Fatalf("StartContainer %s: %v", short(p.cid), err)
	}
	st, err := n.cri.Runtime.PodSandboxStatus(ctx(t), &cri.PodSandboxStatusRequest{PodSandboxId: p.id})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	p.ip = st.Status.GetNetwork().GetIp()
	if err := n.readSpec(p.id, &p.sandbox); err != nil {
		t.Fatal(err)
	}
	if err := n.readSpec(p.cid, &p.container); err != nil {
		t.Fatal(err)
	}
	for _, ns := range p.sandbox.Linux.Namespaces {
		if ns.Type == "network" {
			p.netns = ns.Path
		}
	}
	t.Logf("pod %s (handler %q) at %s, container %s, netns %s", short(p.id), s.handler, p.ip, short(p.cid), filepath.Base(p.netns))
	return p
}

func short(id string) string { return id[:min(12, len(id))] }

// readSpec reads the config.json containerd wrote for task id.
func (n *node) readSpec(id string, into *ociSpec) error {
	path := filepath.Join(n.work, "state", "io.containerd.runtime.v2.task", criNamespace, id, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("the task's spec: %w", err)
	}
	return json.Unmarshal(b, into)
}

// status is the container's CRI status.
func (p *pod) status(t *testing.T) *cri.ContainerStatus {
	t.Helper()
	r, err := p.n.cri.Runtime.ContainerStatus(ctx(t), &cri.ContainerStatusRequest{ContainerId: p.cid})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", short(p.cid), err)
	}
	return r.Status
}

// waitState waits up to d for the container to reach state; returns its status.
func (p *pod) waitState(t *testing.T, state cri.ContainerState, d time.Duration) *cri.ContainerStatus {
	t.Helper()
	var st *cri.ContainerStatus
	err := eventually(d, func() error {
		st = p.status(t)
		if st.State != state {
			return fmt.Errorf("container %s is %s (exit code %d, %s), not %s %s later",
				short(p.cid), st.State, st.ExitCode, st.Reason, state, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// expectRunning: the container runs, the pod has an address on the harness's subnet and a
// network namespace, and both have their cgroups.
func (p *pod) expectRunning(t *testing.T) {
	t.Helper()
	if st := p.status(t); st.State != cri.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("container state %s (exit code %d, %s %s), want CONTAINER_RUNNING", st.State, st.ExitCode, st.Reason, st.Message)
	}
	if !p.n.net.subnet.Contains(net.ParseIP(p.ip)) {
		t.Errorf("pod IP %q is not on the harness's %s", p.ip, p.n.net.subnet)
	}
	if _, err := os.Stat(p.netns); p.netns == "" || err != nil {
		t.Errorf("no network namespace %q for the pod (%v)", p.netns, err)
	}
	for what, s := range map[string]*ociSpec{"sandbox": &p.sandbox, "container": &p.container} {
		if len(cgroupDirs(s.Linux.CgroupsPath)) == 0 {
			t.Errorf("the %s has no cgroup for its cgroupsPath %q", what, s.Linux.CgroupsPath)
		}
	}
}

// stopAndRemove stops and removes the pod (StopPodSandbox, RemovePodSandbox: what kubelet does
// once the pod's containers are done).
func (p *pod) stopAndRemove(t *testing.T) error {
	p.removed = true
	if _, err := p.n.cri.Runtime.StopPodSandbox(ctx(t), &cri.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("StopPodSandbox: %w", err)
	}
	if _, err := p.n.cri.Runtime.RemovePodSandbox(ctx(t), &cri.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		return fmt.Errorf("RemovePodSandbox: %w", err)
	}
	return nil
}

// expectRemoved stops and removes the pod, then nothing of it may remain (shims exit and CNI
// releases asynchronously: a bounded wait).
func (p *pod) expectRemoved(t *testing.T) {
	t.Helper()
	if err := p.stopAndRemove(t); err != nil {
		t.Fatal(err)
	}
	err := eventually(10*time.Second, func() error {
		if left := p.leftovers(t); len(left) > 0 {
			return fmt.Errorf("left behind: %s", strings.Join(left, "; "))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// leftovers is what remains of the pod: its CRI record, shims, network namespace, mounts, IP
// address, veth, cgroups, runc and task state, libcni's cache.
func (p *pod) leftovers(t *testing.T) []string {
	var left []string
	r, err := p.n.cri.Runtime.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{Filter: &cri.PodSandboxFilter{Id: p.id}})
	if err != nil {
		left = append(left, "ListPodSandbox: "+err.Error())
	} else if len(r.Items) > 0 {
		left = append(left, "pod "+short(p.id)+" still listed")
	}
	for _, id := range []string{p.id, p.cid} {
		for _, pr := range p.n.shims(id) {
			left = append(left, fmt.Sprintf("shim pid %d (%s)", pr.pid, filepath.Base(pr.args[0])))
		}
	}
	if _, err := os.Lstat(p.netns); err == nil {
		left = append(left, "netns "+p.netns)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (strings.Contains(f[4], p.id) || strings.Contains(f[4], p.cid)) {
			left = append(left, "mount "+f[4])
		}
	}
	if p.ip != "" {
		if _, err := os.Lstat(filepath.Join(p.n.work, "cni", "networks", p.n.net.name, p.ip)); err == nil {
			left = append(left, "IPAM still holds "+p.ip)
		}
	}
	if v := p.n.veths(); len(v) != p.vethsBefore {
		left = append(left, fmt.Sprintf("%d ports on %s (%s), %d before the pod", len(v), p.n.net.bridge, strings.Join(v, " "), p.vethsBefore))
	}
	for _, s := range []*ociSpec{&p.sandbox, &p.container} {
		for _, d := range cgroupDirs(s.Linux.CgroupsPath) {
			left = append(left, "cgroup "+d)
		}
	}
	for _, id := range []string{p.id, p.cid} {
		for _, d := range []string{"/run/containerd/runc/" + criNamespace, "/run/containerd/fabricks/runc/" + criNamespace,
			filepath.Join(p.n.work, "state", "io.containerd.runtime.v2.task", criNamespace)} {
			if _, err := os.Lstat(filepath.Join(d, id)); err == nil {
				left = append(left, "state "+filepath.Join(d, id))
			}
		}
	}
	cache, _ := filepath.Glob("/var/lib/cni/results/*-" + p.id + "-*")
	for _, f := range cache {
		left = append(left, "cni-cache "+f)
	}
	return left
}

// veths are the ports of the harness's bridge.
func (n *node) veths() []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", n.net.bridge, "brif"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// cgroupDirs are the directories of a cgroupfs cgroupsPath in the host's hierarchies.
func cgroupDirs(path string) []string {
	if path == "" || strings.Contains(path, ":") {
		return nil
	}
	var dirs []string
	seen := map[string]bool{}
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		d := filepath.Join("/sys/fs/cgroup", h.Name(), path)
		real, err := filepath.EvalSymlinks(d)
		if err != nil || seen[real] {
			continue
		}
		if fi, err := os.Stat(real); err == nil && fi.IsDir() {
			seen[real] = true
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// proc is a process of the host.
type proc struct {
	pid, ppid int
	args      []string
}

func procs() []proc {
	entries, _ := os.ReadDir("/proc")
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		ppid := 0
		if len(f) > 1 {
			ppid, _ = strconv.Atoi(f[1])
		}
		out = append(out, proc{pid: pid, ppid: ppid, args: strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")})
	}
	return out
}

// shims are the shim processes containerd started for task id on the harness's socket.
func (n *node) shims(id string) []proc {
	var out []proc
	for _, p := range procs() {
		if strings.HasPrefix(filepath.Base(p.args[0]), "containerd-shim-") && flag(p.args, "-id") == id && flag(p.args, "-address") == n.socket {
			out = append(out, p)
		}
	}
	return out
}

// flag is the value after name in args ("" if absent).
func flag(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// theShim is the one shim of the pod (CRI starts one per pod, with the sandbox's id).
func (p *pod) theShim(t *testing.T) proc {
	t.Helper()
	s := p.n.shims(p.id)
	if len(s) != 1 {
		t.Fatalf("%d shims run for pod %s, want 1", len(s), short(p.id))
	}
	if own := p.n.shims(p.cid); len(own) > 0 {
		t.Errorf("the container got a shim of its own (pid %d), not the pod's", own[0].pid)
	}
	return s[0]
}
