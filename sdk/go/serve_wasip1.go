//go:build wasip1

package fabricks

import "context"

// stopContext: a wasm module receives no signals; the host stops it by
// shutting its listeners down.
func stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}

// listenerStopped: once srv.Serve returns on wasip1, accept failed for good,
// which is how the host says stop (it shut the socket down on SIGTERM).
func listenerStopped(err error) bool {
	return err != nil
}
