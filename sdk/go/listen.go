package fabricks

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
)

// Listen returns the listener named name.
//
// As a wasm module (GOOS=wasip1) it is the socket the host pre-opened for the
// endpoint name, found in FABRICKS_LISTEN_FDS; the host has already bound it,
// so the address in the spec is the host's business. Natively it binds the
// endpoint name of the spec in FABRICKS_LISTEN itself. Either way the error
// says what is missing and which names exist.
//
// Each name can be taken once; closing the listener gives the socket up.
func Listen(name string) (net.Listener, error) {
	return listen(name)
}

// ListenOr is Listen, except that natively, when FABRICKS_LISTEN is unset or
// blank, it listens on fallbackAddr ("host:port" as for net.Listen, e.g.
// ":8080"). As a wasm module it is exactly Listen: the fallback could not be
// reached from outside the module.
func ListenOr(name, fallbackAddr string) (net.Listener, error) {
	return listenOr(name, fallbackAddr)
}

// listenSpec binds the endpoint name of spec with net.Listen.
func listenSpec(spec, name string) (net.Listener, error) {
	endpoints, err := ParseSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("fabricks: %s: %w", EnvListen, err)
	}
	for _, ep := range endpoints {
		if ep.Name == name {
			l, err := net.Listen("tcp", ep.Addr)
			if err != nil {
				return nil, fmt.Errorf("fabricks: listener %q (%s from %s): %w", name, ep.Addr, EnvListen, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("fabricks: no listener named %q in %s=%q (it names: %s)",
		name, EnvListen, spec, names(endpoints, func(e Endpoint) string { return e.Name }))
}

var taken = struct {
	sync.Mutex
	names map[string]bool
}{names: map[string]bool{}}

// listenFD makes a listener of the socket named name in fdsEnv, a
// FABRICKS_LISTEN_FDS value. The host owns the number; this process owns the
// socket from now on.
func listenFD(fdsEnv, name string) (net.Listener, error) {
	fds, err := parseFDs(fdsEnv)
	if err != nil {
		return nil, fmt.Errorf("fabricks: %w", err)
	}
	for _, entry := range fds {
		if entry.name != name {
			continue
		}
		taken.Lock()
		defer taken.Unlock()
		if taken.names[name] {
			return nil, fmt.Errorf("fabricks: the listener %q was already taken; call Listen once per name and share the listener", name)
		}
		// FileListener keeps its own reference to the descriptor (a dup natively, a
		// reference count on wasip1), so the *os.File is closed right after.
		f := os.NewFile(uintptr(entry.fd), name)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fabricks: descriptor %d (%s=%s) is not a listening TCP socket: %w",
				entry.fd, EnvListenFDs, fdsEnv, err)
		}
		taken.names[name] = true
		return l, nil
	}
	return nil, fmt.Errorf("fabricks: the host passed no listener named %q: %s=%q (it names: %s); "+
		"add %q to the listen spec (annotation %s, fabricks build --listen, or listen in fabricks.toml)",
		name, EnvListenFDs, fdsEnv, names(fds, func(f namedFD) string { return f.name }), name, Annotation)
}

func blank(s string) bool { return strings.TrimSpace(s) == "" }
