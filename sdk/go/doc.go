// Package fabricks is the Go side of the Fabricks runtime: it gives a program
// the TCP listeners the host bound for it, and serves HTTP with a graceful
// shutdown, the same way natively and as a WASI preview-1 module
// (GOOS=wasip1 GOARCH=wasm) under the Fabricks containerd shim.
//
// Go's own net.Listen on wasip1 is an in-process fake that nothing outside can
// reach. Under Fabricks the shim binds every port of the listen spec itself
// (inside the pod's network namespace), hands each one to the module as a
// pre-opened socket, and names the descriptors in FABRICKS_LISTEN_FDS
// ("http=4,admin=5"). [Listen] turns one of them into a [net.Listener].
// Natively there is no host to ask, so [Listen] binds the same spec itself,
// read from FABRICKS_LISTEN, and [ListenOr] falls back to an address when the
// variable is unset, so `go run .` just works:
//
//	l, err := fabricks.ListenOr("http", ":8080")
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &http.Server{Handler: mux}
//	if err := fabricks.Serve(context.Background(), srv, l); err != nil {
//		log.Fatal(err)
//	}
//
// A listen spec is a comma-separated list of NAME=[ADDR:]PORT[/tcp] entries,
// e.g. "http=8080" or "http=0.0.0.0:8080,admin=[::1]:9090": a bare port binds
// 0.0.0.0, an entry without NAME= is called "port-PORT". See [ParseSpec].
//
// The package has no dependencies beyond the standard library.
package fabricks
