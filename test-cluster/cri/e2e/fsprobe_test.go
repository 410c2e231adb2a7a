package e2e

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"fabricks.dev/test-cluster/cri/client"
)

// A Go program's expectations of a container's files, in pods as kubelet makes them
// (test-cluster/programs/fsprobe): /dev/null, /dev/zero, /dev/full, /dev/random,
// /dev/urandom and a writable os.TempDir(); a 16 MiB memory-backed volume (what kubelet makes
// of an emptyDir with medium Memory and a sizeLimit: a tmpfs on the host, bound into the
// container) takes 15 MiB and refuses 17 with "no space left on device"; removing each pod
// leaves nothing of it on the host.
func TestUsualFiles(t *testing.T) {
	n := harness(t)
	image := need(t, "FABRICKS_CRI_FSPROBE_IMAGE", "test-cluster/programs/fsprobe packed by fabricks build, imported into k8s.io")
	if !t.Run("image_listed", func(t *testing.T) { expectListed(t, n, image) }) {
		return
	}
	volume := t.TempDir()
	if err := syscall.Mount("tmpfs", volume, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatalf("mounting the 16 MiB tmpfs volume on %s: %v", volume, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(volume, 0) })
	mounts := []*cri.Mount{{ContainerPath: "/scratch", HostPath: volume}}
	for _, c := range []struct {
		name     string
		args     []string
		code     int32
		lines    []string
		contains string
	}{
		{"devices_and_tmp", nil, 0, []string{"ok /dev/null takes writes and reads empty", "ok /dev/zero reads zeros",
			"ok /dev/urandom and /dev/random read random bytes", "ok /dev/full refuses writes with ENOSPC", "ok os.TempDir() is writable"}, ""},
		{"volume_takes_15mib", []string{"--fill", "/scratch/a", "--mib", "15"}, 0, []string{"ok fill /scratch/a with 15 MiB"}, ""},
		{"volume_refuses_17mib", []string{"--fill", "/scratch/b", "--mib", "17"}, 1, nil, "no space left on device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := n.startPod(t, podSpec{name: "fsprobe-" + c.name, handler: "fabricks", image: image, args: c.args, mounts: mounts})
			if !t.Run("exits", func(t *testing.T) { exits(t, p, c.code, c.lines...) }) {
				return
			}
			if c.contains != "" {
				// containerd may copy the last output to the log after the exit it reports; the errno text
				// is capitalized by Go ("No space left on device").
				var l client.Log
				err := eventually(10*time.Second, func() (err error) {
					if l, err = client.ReadLog(p.logPath); err == nil && !strings.Contains(strings.ToLower(l.Stdout+l.Stderr), c.contains) {
						err = fmt.Errorf("the CRI log lacks %q", c.contains)
					}
					return err
				})
				if err != nil {
					t.Errorf("%v; it holds:\n%s%s", err, l.Stdout, l.Stderr)
				}
			}
			t.Run("removed", func(t *testing.T) { p.expectRemoved(t) })
			// The next case starts from an empty volume, as a new pod's emptyDir does.
			for _, f := range []string{"a", "b"} {
				_ = os.Remove(volume + "/" + f)
			}
		})
	}
}
