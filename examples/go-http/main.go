// go-http: an HTTP service that runs the same natively and as a WASI
// preview-1 module under Fabricks. The host binds its port; the program takes
// the listener named "http" (natively: :8080, or FABRICKS_LISTEN).
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"time"

	fabricks "github.com/fabricks-dev/fabricks/sdk/go"
)

// service is the one handler of every build: natively and as a wasip1 command,
// main serves it on a listener; in a reactor build (mode = "reactor") main is
// never called and the host calls service once per request.
var service = newHandler(os.Stdout)

func init() { fabricks.Handle(service) }

func main() {
	l, err := fabricks.ListenOr("http", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-http:", err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler:           service,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	where := l.Addr().String()
	if runtime.GOOS == "wasip1" {
		// A socket the host handed over does not know its address here.
		where = `the host's socket "http"`
	}
	fmt.Printf("go-http: listening on %s (%s/%s, %s)\n", where, runtime.GOOS, runtime.GOARCH, runtime.Version())
	if err := fabricks.Serve(context.Background(), srv, l); err != nil {
		fmt.Fprintln(os.Stderr, "go-http:", err)
		os.Exit(1)
	}
	fmt.Println("go-http: stopped")
}
