// fcri: the few CRI calls the Fabricks tests make, as kubelet makes them, for hosts without
// crictl (it does not install from the Go module proxy here; see ../README.md). The commands
// and the JSON files they read follow crictl's, so a test can switch to crictl unchanged.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"fabricks.dev/test-cluster/cri/client"
)

const usage = `usage: fcri [--runtime-endpoint unix:///path.sock] [--timeout 30s] COMMAND [ARGS...]
(endpoint also from $CONTAINER_RUNTIME_ENDPOINT)
  version
  runp [--runtime HANDLER] POD.json            RunPodSandbox; prints the pod id
  stopp POD_ID...                              StopPodSandbox
  rmp POD_ID...                                RemovePodSandbox
  pods [-q]                                    ListPodSandbox
  inspectp [--ip] POD_ID                       PodSandboxStatus (verbose) as JSON, or only the pod IP
  pull IMAGE                                   PullImage; prints the image ref
  images [-q]                                  ListImages
  create POD_ID CTR.json POD.json              CreateContainer; prints the container id
  start CTR_ID...                              StartContainer
  stop [-t SECONDS] CTR_ID...                  StopContainer
  rm CTR_ID...                                 RemoveContainer
  ps [-a] [-q] [--pod POD_ID]                  ListContainers (running only unless -a)
  inspect [--state] CTR_ID                     ContainerStatus (verbose) as JSON, or only its state
  logs CTR_ID                                  the container's CRI log file: stdout to stdout, stderr to stderr
`

var (
	rt      cri.RuntimeServiceClient
	img     cri.ImageServiceClient
	timeout time.Duration
)

func main() {
	top := flag.NewFlagSet("fcri", flag.ExitOnError)
	top.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	endpoint := top.String("runtime-endpoint", os.Getenv("CONTAINER_RUNTIME_ENDPOINT"), "CRI socket")
	top.StringVar(endpoint, "r", *endpoint, "CRI socket")
	top.DurationVar(&timeout, "timeout", 30*time.Second, "per call")
	_ = top.Parse(os.Args[1:])
	args := top.Args()
	if len(args) == 0 || *endpoint == "" {
		top.Usage()
		os.Exit(2)
	}
	c, err := client.Dial(*endpoint)
	if err != nil {
		fatal(err)
	}
	defer c.Close()
	rt, img = c.Runtime, c.Image
	cmd, ok := commands[args[0]]
	if !ok {
		top.Usage()
		os.Exit(2)
	}
	if err := cmd(args[1:]); err != nil {
		fatal(fmt.Errorf("%s: %w", args[0], err))
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "fcri:", err)
	os.Exit(1)
}

var commands = map[string]func([]string) error{
	"version": version,
	"runp":    runp,
	"stopp": eachID(func(c context.Context, id string) error {
		_, err := rt.StopPodSandbox(c, &cri.StopPodSandboxRequest{PodSandboxId: id})
		return err
	}),
	"rmp": eachID(func(c context.Context, id string) error {
		_, err := rt.RemovePodSandbox(c, &cri.RemovePodSandboxRequest{PodSandboxId: id})
		return err
	}),
	"pods":     pods,
	"inspectp": inspectp,
	"pull":     pull,
	"images":   images,
	"create":   create,
	"start": eachID(func(c context.Context, id string) error {
		_, err := rt.StartContainer(c, &cri.StartContainerRequest{ContainerId: id})
		return err
	}),
	"stop": stop,
	"rm": eachID(func(c context.Context, id string) error {
		_, err := rt.RemoveContainer(c, &cri.RemoveContainerRequest{ContainerId: id})
		return err
	}),
	"ps":      ps,
	"inspect": inspect,
	"logs":    logs,
}

func ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

func flags(name string, args []string, min, max int, def func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if def != nil {
		def(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	n := fs.NArg()
	if n < min || (max >= 0 && n > max) {
		return nil, fmt.Errorf("wrong number of arguments (see fcri without arguments)")
	}
	return fs.Args(), nil
}

func eachID(call func(context.Context, string) error) func([]string) error {
	return func(args []string) error {
		ids, err := flags("", args, 1, -1, nil)
		if err != nil {
			return err
		}
		for _, id := range ids {
			c, cancel := ctx()
			err := call(c, id)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			fmt.Println(id)
		}
		return nil
	}
}

func printJSON(m map[string]any) error {
	var buf bytes.Buffer
	buf.WriteString("{")
	first := true
	for _, k := range []string{"status", "info"} {
		v, ok := m[k]
		if !ok {
			continue
		}
		if !first {
			buf.WriteString(",")
		}
		first = false
		fmt.Fprintf(&buf, "\n  %q: ", k)
		switch v := v.(type) {
		case proto.Message:
			b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(v)
			if err != nil {
				return err
			}
			buf.Write(bytes.ReplaceAll(b, []byte("\n"), []byte("\n  ")))
		case map[string]string:
			// CRI's verbose info values are JSON documents already.
			buf.WriteString("{")
			for i, ik := range slices.Sorted(maps.Keys(v)) {
				if i > 0 {
					buf.WriteString(",")
				}
				fmt.Fprintf(&buf, "\n    %q: %s", ik, v[ik])
			}
			buf.WriteString("\n  }")
		}
	}
	buf.WriteString("\n}\n")
	_, err := os.Stdout.Write(buf.Bytes())
	return err
}

func version([]string) error {
	c, cancel := ctx()
	defer cancel()
	r, err := rt.Version(c, &cri.VersionRequest{})
	if err != nil {
		return err
	}
	fmt.Printf("Version:  %s\nRuntimeName:  %s\nRuntimeVersion:  %s\nRuntimeApiVersion:  %s\n",
		r.Version, r.RuntimeName, r.RuntimeVersion, r.RuntimeApiVersion)
	return nil
}

func runp(args []string) error {
	var handler string
	a, err := flags("runp", args, 1, 1, func(fs *flag.FlagSet) { fs.StringVar(&handler, "runtime", "", "runtime handler") })
	if err != nil {
		return err
	}
	var cfg cri.PodSandboxConfig
	if err := client.LoadJSON(a[0], &cfg); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := rt.RunPodSandbox(c, &cri.RunPodSandboxRequest{Config: &cfg, RuntimeHandler: handler})
	if err != nil {
		return err
	}
	fmt.Println(r.PodSandboxId)
	return nil
}

func pods(args []string) error {
	var quiet bool
	if _, err := flags("pods", args, 0, 0, func(fs *flag.FlagSet) { fs.BoolVar(&quiet, "q", false, "ids only") }); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := rt.ListPodSandbox(c, &cri.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, p := range r.Items {
		if quiet {
			fmt.Println(p.Id)
		} else {
			fmt.Printf("%s\t%s\t%s\t%s\t%s\n", p.Id, p.State, p.Metadata.GetNamespace(), p.Metadata.GetName(), p.RuntimeHandler)
		}
	}
	return nil
}

func inspectp(args []string) error {
	var ip bool
	a, err := flags("inspectp", args, 1, 1, func(fs *flag.FlagSet) { fs.BoolVar(&ip, "ip", false, "only the pod IP") })
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := rt.PodSandboxStatus(c, &cri.PodSandboxStatusRequest{PodSandboxId: a[0], Verbose: !ip})
	if err != nil {
		return err
	}
	if ip {
		if r.Status.GetNetwork().GetIp() == "" {
			return errors.New("pod has no IP")
		}
		fmt.Println(r.Status.Network.Ip)
		return nil
	}
	return printJSON(map[string]any{"status": r.Status, "info": r.Info})
}

func pull(args []string) error {
	a, err := flags("pull", args, 1, 1, nil)
	if err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := img.PullImage(c, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: a[0]}})
	if err != nil {
		return err
	}
	fmt.Println(r.ImageRef)
	return nil
}

func images(args []string) error {
	var quiet bool
	if _, err := flags("images", args, 0, 0, func(fs *flag.FlagSet) { fs.BoolVar(&quiet, "q", false, "ids only") }); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := img.ListImages(c, &cri.ListImagesRequest{})
	if err != nil {
		return err
	}
	for _, i := range r.Images {
		if quiet {
			fmt.Println(i.Id)
		} else {
			fmt.Printf("%s\t%s\t%d\n", i.Id, strings.Join(i.RepoTags, ","), i.Size)
		}
	}
	return nil
}

func create(args []string) error {
	a, err := flags("create", args, 3, 3, nil)
	if err != nil {
		return err
	}
	var ctr cri.ContainerConfig
	var pod cri.PodSandboxConfig
	if err := client.LoadJSON(a[1], &ctr); err != nil {
		return err
	}
	if err := client.LoadJSON(a[2], &pod); err != nil {
		return err
	}
	c, cancel := ctx()
	defer cancel()
	r, err := rt.CreateContainer(c, &cri.CreateContainerRequest{PodSandboxId: a[0], Config: &ctr, SandboxConfig: &pod})
	if err != nil {
		return err
	}
	fmt.Println(r.ContainerId)
	return nil
}

func stop(args []string) error {
	var secs int64
	ids, err := flags("stop", args, 1, -1, func(fs *flag.FlagSet) { fs.Int64Var(&secs, "t", 0, "grace period") })
	if err != nil {
		return err
	}
	if d := time.Duration(secs+10) * time.Second; d > timeout {
		timeout = d
	}
	return eachID(func(c context.Context, id string) error {
		_, err := rt.StopContainer(c, &cri.StopContainerRequest{ContainerId: id, Timeout: secs})
		return err
	})(ids)
}

func ps(args []string) error {
	var all, quiet bool
	var pod string
	if _, err := flags("ps", args, 0, 0, func(fs *flag.FlagSet) {
		fs.BoolVar(&all, "a", false, "all states")
		fs.BoolVar(&quiet, "q", false, "ids only")
		fs.StringVar(&pod, "pod", "", "of this pod only")
	}); err != nil {
		return err
	}
	filter := &cri.ContainerFilter{PodSandboxId: pod}
	if !all {
		filter.State = &cri.ContainerStateValue{State: cri.ContainerState_CONTAINER_RUNNING}
	}
	c, cancel := ctx()
	defer cancel()
	r, err := rt.ListContainers(c, &cri.ListContainersRequest{Filter: filter})
	if err != nil {
		return err
	}
	for _, x := range r.Containers {
		if quiet {
			fmt.Println(x.Id)
		} else {
			fmt.Printf("%s\t%s\t%s\t%s\t%s\n", x.Id, x.State, x.Metadata.GetName(), x.PodSandboxId, x.Image.GetImage())
		}
	}
	return nil
}

func status(id string, verbose bool) (*cri.ContainerStatusResponse, error) {
	c, cancel := ctx()
	defer cancel()
	return rt.ContainerStatus(c, &cri.ContainerStatusRequest{ContainerId: id, Verbose: verbose})
}

func inspect(args []string) error {
	var state bool
	a, err := flags("inspect", args, 1, 1, func(fs *flag.FlagSet) { fs.BoolVar(&state, "state", false, "only STATE and exit code") })
	if err != nil {
		return err
	}
	r, err := status(a[0], !state)
	if err != nil {
		return err
	}
	if state {
		fmt.Printf("%s %d\n", r.Status.State, r.Status.ExitCode)
		return nil
	}
	return printJSON(map[string]any{"status": r.Status, "info": r.Info})
}

// logs prints a CRI log file ("TIMESTAMP STREAM P|F CONTENT" lines; P = partial line).
func logs(args []string) error {
	a, err := flags("logs", args, 1, 1, nil)
	if err != nil {
		return err
	}
	r, err := status(a[0], false)
	if err != nil {
		return err
	}
	if r.Status.LogPath == "" {
		return errors.New("container has no log path (pod log_directory and container log_path unset)")
	}
	f, err := os.Open(r.Status.LogPath)
	if err != nil {
		return err
	}
	defer f.Close()
	out := map[string]io.Writer{"stdout": os.Stdout, "stderr": os.Stderr}
	return client.ParseLog(f, func(stream, content string) error {
		_, err := io.WriteString(out[stream], content)
		return err
	})
}
