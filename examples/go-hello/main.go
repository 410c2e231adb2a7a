// Command go-hello is the Fabricks example program. It runs the same natively
// (`go run .`) and as a WASI preview-1 module, and its flags exercise what the
// runtime must get right: args, env, exit status, stdin, files and being
// stopped while sleeping or spinning.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
)

// spinSink is written by --spin so the loop has an observable effect and
// cannot be optimised into something the runtime never has to interrupt.
var spinSink int

// allocated keeps --alloc-mib's memory reachable, so the collector cannot
// return it before the program reports it.
var allocated [][]byte

func main() {
	exitCode := flag.Int("exit", 0, "exit with this status")
	echoStdin := flag.Bool("stdin", false, "read all of stdin and print it back with its byte count")
	sleep := flag.Duration("sleep", 0, "sleep this long (Go duration, e.g. 30s) before exiting")
	spin := flag.Bool("spin", false, "busy-loop forever (only a kill ends it)")
	writePath := flag.String("write", "", "write --content to this file")
	content := flag.String("content", "written by go-hello\n", "what --write writes")
	readPath := flag.String("read", "", "print this file")
	allocMiB := flag.Int("alloc-mib", 0, "allocate and touch this many MiB, one MiB at a time (to test memory limits)")
	flag.Parse()

	fmt.Println("Hello from Fabricks!")
	fmt.Printf("runtime: %s/%s\n", runtime.GOOS, runtime.GOARCH)
	fmt.Printf("argv0: %s\n", os.Args[0])
	fmt.Printf("args: %q\n", flag.Args())
	if greeting, ok := os.LookupEnv("GREETING"); ok {
		fmt.Printf("GREETING: %s\n", greeting)
	} else {
		fmt.Println("GREETING: (unset)")
	}

	if *writePath != "" {
		check(os.WriteFile(*writePath, []byte(*content), 0o644), "write", *writePath)
		fmt.Printf("wrote %d bytes to %s\n", len(*content), *writePath)
	}
	if *readPath != "" {
		data, err := os.ReadFile(*readPath)
		check(err, "read", *readPath)
		fmt.Printf("read %d bytes from %s:\n%s", len(data), *readPath, data)
	}
	if *echoStdin {
		data, err := io.ReadAll(os.Stdin)
		check(err, "read", "stdin")
		fmt.Printf("stdin (%d bytes):\n%s", len(data), data)
	}
	if *allocMiB > 0 {
		for i := 0; i < *allocMiB; i++ {
			chunk := make([]byte, 1<<20)
			for j := range chunk {
				chunk[j] = byte(j)
			}
			allocated = append(allocated, chunk)
		}
		fmt.Printf("allocated %d MiB\n", *allocMiB)
	}
	if *sleep > 0 {
		fmt.Printf("sleeping %s\n", *sleep)
		time.Sleep(*sleep)
		fmt.Println("slept")
	}
	if *spin {
		fmt.Println("spinning")
		for i := 0; ; i++ {
			spinSink = i
		}
	}
	os.Exit(*exitCode)
}

// check exits with status 1 and names the operation, so a failing mount or
// preopen shows up as a readable message rather than a bare status.
func check(err error, op, path string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-hello: %s %s: %v\n", op, path, err)
		os.Exit(1)
	}
}
