// churn: tasks per second of create -> start -> exit -> delete through the containerd API, as a
// long-lived client (kubelet, any orchestrator) drives a runtime: one process, one connection,
// N workers each looping NewContainer, NewTask (null IO), Start, wait for the exit, Delete.
// bench/churn.sh runs it for both runtimes with the same flags; `ctr run --rm` would add ctr's
// own process start (the same for both runtimes, and no part of either) to every task.
//
// usage: churn -address SOCK -namespace NS -image REF -runtime RT [-parallel N]
//
//	[-tasks M | -duration D] [-prefix ID] [-platform P] [-- ARGS...]
//
// Prints one line: `tasks=M seconds=S tasks_per_s=R failures=F`; exits 1 if any task failed
// (a failure is also described on stderr), 2 on a usage or setup error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/platforms"
)

func main() {
	address := flag.String("address", os.Getenv("CONTAINERD_ADDRESS"), "containerd socket")
	ns := flag.String("namespace", os.Getenv("CONTAINERD_NAMESPACE"), "containerd namespace")
	ref := flag.String("image", "", "image (already pulled or imported, and unpacked)")
	runtime := flag.String("runtime", "io.containerd.runc.v2", "runtime of the tasks")
	parallel := flag.Int("parallel", 4, "workers")
	tasks := flag.Int("tasks", 40, "tasks in all (shared by the workers); ignored with -duration")
	duration := flag.Duration("duration", 0, "run for this long instead of -tasks")
	prefix := flag.String("prefix", fmt.Sprintf("churn-%d", os.Getpid()), "container id prefix")
	platform := flag.String("platform", "", "platform of the image's manifest (default: the host's)")
	timeout := flag.Duration("timeout", 2*time.Minute, "bound for any one task's whole cycle")
	flag.Parse()
	if *address == "" || *ns == "" || *ref == "" || *parallel < 1 || (*duration <= 0 && *tasks < 1) {
		flag.Usage()
		os.Exit(2)
	}
	args := flag.Args()

	client, err := containerd.New(*address, containerd.WithDefaultNamespace(*ns))
	if err != nil {
		fatal("connect %s: %v", *address, err)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), *ns)
	stored, err := client.ImageService().Get(ctx, *ref)
	if err != nil {
		fatal("image %s: %v", *ref, err)
	}
	var img containerd.Image
	if *platform != "" {
		p, err := platforms.Parse(*platform)
		if err != nil {
			fatal("platform %s: %v", *platform, err)
		}
		img = containerd.NewImageWithPlatform(client, stored, platforms.Only(p))
	} else {
		img = containerd.NewImage(client, stored)
	}

	var next, done, failures atomic.Int64
	var deadline time.Time
	t0 := time.Now()
	if *duration > 0 {
		deadline = t0.Add(*duration)
	}
	var wg sync.WaitGroup
	for range *parallel {
		wg.Go(func() {
			for {
				k := next.Add(1) - 1
				if deadline.IsZero() && k >= int64(*tasks) || !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				tctx, cancel := context.WithTimeout(ctx, *timeout)
				err := cycle(tctx, client, img, fmt.Sprintf("%s-%d", *prefix, k), *runtime, args)
				cancel()
				if err != nil {
					failures.Add(1)
					fmt.Fprintf(os.Stderr, "churn: task %s-%d: %v\n", *prefix, k, err)
				} else {
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	s := time.Since(t0).Seconds()
	n, f := done.Load(), failures.Load()
	fmt.Printf("tasks=%d seconds=%.3f tasks_per_s=%.1f failures=%d\n", n, s, float64(n)/s, f)
	if f > 0 {
		fmt.Fprintf(os.Stderr, "churn: %d of %d tasks failed\n", f, n+f)
		os.Exit(1)
	}
}

// cycle: one task's whole life; the container and its snapshot are removed whatever happens.
func cycle(ctx context.Context, client *containerd.Client, img containerd.Image, id, runtime string, args []string) (err error) {
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	ctr, err := client.NewContainer(ctx, id,
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(specOpts...),
		containerd.WithRuntime(runtime, nil))
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	defer func() {
		if derr := ctr.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete container: %w", derr))
		}
	}()
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	defer func() {
		// As `ctr run --rm` deletes: the task has exited. Only a failed one is killed first.
		var opts []containerd.ProcessDeleteOpts
		if err != nil {
			opts = append(opts, containerd.WithProcessKill)
		}
		if _, derr := task.Delete(context.WithoutCancel(ctx), opts...); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete task: %w", derr))
		}
	}()
	exited, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return fmt.Errorf("start task: %w", err)
	}
	select {
	case st := <-exited:
		code, _, serr := st.Result()
		if serr != nil {
			return fmt.Errorf("exit status: %w", serr)
		}
		if code != 0 {
			return fmt.Errorf("exited with status %d", code)
		}
	case <-ctx.Done():
		return fmt.Errorf("no exit: %w", ctx.Err())
	}
	return nil
}

func fatal(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "churn: "+format+"\n", a...)
	os.Exit(2)
}
