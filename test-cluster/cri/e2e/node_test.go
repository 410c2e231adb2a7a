// Package e2e drives a real containerd through CRI as kubelet does: pods with the runtime
// handlers `runc` and `fabricks`, their network, logs, exit codes, image pulls, and what is left
// once they are gone. The containerd is the test harness's (test-cluster/harness.sh up --cri);
// the shell suites provision it and pass it in the environment, see env below. Without that
// environment every test is skipped.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fabricks.dev/test-cluster/cri/client"
)

// What `harness.sh env FLAVOUR` exports, for a containerd started with `up --cri`.
const (
	envEndpoint = "CONTAINER_RUNTIME_ENDPOINT" // unix://$W/containerd.sock
	envSocket   = "CONTAINERD_ADDRESS"         // $W/containerd.sock, as shims get it in -address
	envWork     = "FABRICKS_HARNESS_WORK"      // $W
)

// callTimeout bounds every CRI call: a hang is a failure, not a slow test.
const callTimeout = 2 * time.Minute

// node is the harness's containerd as the tests see it.
type node struct {
	cri    *client.Client
	socket string // containerd's socket, as our shims carry it in -address
	work   string // the harness's work dir $W
	net    cniNet
}

// cniNet is the harness's CNI network, from its conflist.
type cniNet struct {
	name, bridge string
	subnet       *net.IPNet
}

// harness connects to the harness's containerd, or skips the test when the environment does
// not name one. On failure, the containerd log's warnings and errors since the test began are
// logged (shim logs go there too).
func harness(t *testing.T) *node {
	t.Helper()
	endpoint, socket, work := os.Getenv(envEndpoint), os.Getenv(envSocket), os.Getenv(envWork)
	if endpoint == "" || socket == "" || work == "" {
		t.Skipf("needs a harness containerd with CRI: %s, %s and %s from `test-cluster/harness.sh env FLAVOUR` "+
			"after `harness.sh up FLAVOUR --cri` (test-cluster/e2e-cri.sh provisions one)", envEndpoint, envSocket, envWork)
	}
	cn, err := readCNI(work)
	if err != nil {
		t.Fatalf("the harness's CNI network: %v (was containerd started with `up --cri`?)", err)
	}
	c, err := client.Dial(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &node{cri: c, socket: socket, work: work, net: cn}
	n.logOnFailure(t)
	return n
}

func readCNI(work string) (cniNet, error) {
	files, _ := filepath.Glob(filepath.Join(work, "cni", "conf", "*.conflist"))
	if len(files) != 1 {
		return cniNet{}, fmt.Errorf("want one conflist in %s/cni/conf, found %d", work, len(files))
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return cniNet{}, err
	}
	var conf struct {
		Name    string `json:"name"`
		Plugins []struct {
			Bridge string `json:"bridge"`
			IPAM   struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		return cniNet{}, fmt.Errorf("%s: %w", files[0], err)
	}
	if len(conf.Plugins) == 0 || len(conf.Plugins[0].IPAM.Ranges) == 0 || len(conf.Plugins[0].IPAM.Ranges[0]) == 0 {
		return cniNet{}, fmt.Errorf("%s: no bridge plugin with a host-local range", files[0])
	}
	p := conf.Plugins[0]
	_, subnet, err := net.ParseCIDR(p.IPAM.Ranges[0][0].Subnet)
	if err != nil {
		return cniNet{}, fmt.Errorf("%s: %w", files[0], err)
	}
	return cniNet{name: conf.Name, bridge: p.Bridge, subnet: subnet}, nil
}

// logOnFailure: at the end of a failed test, containerd's warnings and errors logged during it.
func (n *node) logOnFailure(t *testing.T) {
	path := filepath.Join(n.work, "containerd.log")
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	mark := st.Size()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := f.Seek(mark, 0); err != nil {
			return
		}
		b := make([]byte, 4<<20)
		k, _ := f.Read(b)
		var lines []string
		for _, l := range strings.Split(string(b[:k]), "\n") {
			if strings.Contains(l, "level=warning") || strings.Contains(l, "level=error") || strings.Contains(l, "level=fatal") {
				lines = append(lines, truncate(l, 400))
			}
		}
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		for _, l := range lines {
			t.Log("containerd.log:", l)
		}
	})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ctx is a context for one CRI call.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return c
}

// eventually retries check every 200 ms until it returns nil or d has passed; the last error.
func eventually(d time.Duration, check func() error) error {
	end := time.Now().Add(d)
	for {
		err := check()
		if err == nil || time.Now().After(end) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// need returns the environment variable name, or skips the test saying who sets it.
func need(t *testing.T, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("needs %s (%s), set by the suite that provisions it", name, what)
	}
	return v
}
