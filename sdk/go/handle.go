package fabricks

import "net/http"

// handler is the service a reactor build serves; see [Handle].
var handler http.Handler

// Handle registers h as the program's HTTP service for a reactor build.
//
// A reactor build (`fabricks build --mode reactor`, or mode = "reactor" in
// fabricks.toml; underneath GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared -tags fabricks_reactor) has no main loop: main is never called, only package
// initialisation runs, and then the Fabricks host calls into the module once
// per request (the ABI is in docs/reactor-abi.md). So Handle must be called
// from an init function or a package-level variable initialiser.
//
// In any other build (native, or a wasip1 command) Handle only records h:
// main serves it as usual, e.g. with [ListenOr] and [Serve], so the same
// handler code builds in all three ways.
func Handle(h http.Handler) {
	handler = h
}
