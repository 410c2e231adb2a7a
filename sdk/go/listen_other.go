//go:build !wasip1

package fabricks

import (
	"fmt"
	"net"
	"os"
)

func listen(name string) (net.Listener, error) {
	spec := os.Getenv(EnvListen)
	if blank(spec) {
		return nil, fmt.Errorf("fabricks: %s is not set; set it to a listen spec naming %q, e.g. %s=%s=8080, or use ListenOr",
			EnvListen, name, EnvListen, name)
	}
	return listenSpec(spec, name)
}

func listenOr(name, fallbackAddr string) (net.Listener, error) {
	spec := os.Getenv(EnvListen)
	if blank(spec) {
		l, err := net.Listen("tcp", fallbackAddr)
		if err != nil {
			return nil, fmt.Errorf("fabricks: listener %q (fallback %s, %s unset): %w", name, fallbackAddr, EnvListen, err)
		}
		return l, nil
	}
	return listenSpec(spec, name)
}
