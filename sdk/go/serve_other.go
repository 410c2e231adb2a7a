//go:build !wasip1

package fabricks

import (
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func stopContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

func listenerStopped(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
