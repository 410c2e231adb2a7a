//go:build wasip1

package fabricks

import (
	"fmt"
	"net"
	"os"
)

func listen(name string) (net.Listener, error) {
	fds, ok := os.LookupEnv(EnvListenFDs)
	if !ok {
		return nil, fmt.Errorf("fabricks: %s is not set, so the host passed no sockets to listen on "+
			"(Go's own net.Listen cannot be reached from outside a wasm module); run under the "+
			"Fabricks shim or `fabricks run --listen`, with a listen spec naming %q "+
			"(annotation %s, fabricks build --listen, or listen in fabricks.toml)", EnvListenFDs, name, Annotation)
	}
	return listenFD(fds, name)
}

func listenOr(name, _ string) (net.Listener, error) {
	return listen(name)
}
