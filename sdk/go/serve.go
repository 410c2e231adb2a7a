package fabricks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds how long Serve lets in-flight requests run after a
// stop before it closes their connections.
var ShutdownTimeout = 5 * time.Second

// Serve serves srv on l until the program is asked to stop, then shuts srv
// down gracefully: it stops accepting, lets in-flight requests finish for up
// to ShutdownTimeout, and returns.
//
// What asks a program to stop:
//   - ctx being done;
//   - natively, SIGINT or SIGTERM (a second one has its default effect);
//   - as a wasm module there are no signals: on SIGTERM the host shuts the
//     listener down, srv.Serve returns, and that is the stop;
//   - natively too, l being closed by someone else.
//
// Serve returns nil after a graceful stop; the error of srv.Serve if it failed
// otherwise; and an error wrapping context.DeadlineExceeded if requests were
// still running at the deadline (their connections are then closed).
func Serve(ctx context.Context, srv *http.Server, l net.Listener) error {
	ctx, stop := stopContext(ctx)
	defer stop()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	var serveErr error
	serving := true
	select {
	case serveErr = <-served:
		serving = false
	case <-ctx.Done():
	}
	stop() // from here on a second signal is not caught

	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		srv.Close()
	}
	if serving {
		serveErr = <-served // http.ErrServerClosed, once Shutdown closed l
	}

	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) && !listenerStopped(serveErr) {
		return fmt.Errorf("fabricks: serving on %s: %w", l.Addr(), serveErr)
	}
	if shutdownErr != nil {
		return fmt.Errorf("fabricks: requests still running %v after the stop were cut off: %w", ShutdownTimeout, shutdownErr)
	}
	return nil
}
