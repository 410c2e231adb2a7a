package fabricks

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

const (
	// EnvListen holds a listen spec. Natively, Listen binds what it names;
	// under the shim it is one of the places the shim reads the spec from.
	EnvListen = "FABRICKS_LISTEN"
	// EnvListenFDs is set by the host for a wasm module: the descriptor of
	// each endpoint it bound, as comma-separated NAME=FD pairs ("http=4").
	EnvListenFDs = "FABRICKS_LISTEN_FDS"
	// Annotation is the pod annotation (and image config label) that carries
	// a listen spec.
	Annotation = "fabricks.io/listen"

	maxNameLen = 63
	specSyntax = "expected NAME=[ADDR:]PORT[/tcp], e.g. http=8080"
)

// Endpoint is one entry of a listen spec.
type Endpoint struct {
	// Name the program asks for the listener by ("http"; "port-8080" when
	// the entry had no NAME=).
	Name string
	// Addr is the address to bind, as net.Listen takes it: "0.0.0.0:8080",
	// "[::1]:9090".
	Addr string
	// Port is the TCP port, 1-65535.
	Port int
}

// ParseSpec parses a listen spec: comma-separated NAME=[ADDR:]PORT[/tcp]
// entries. ADDR is an IP literal (IPv6 in brackets); without it the endpoint
// binds 0.0.0.0. Names hold letters, digits, '-', '_' and '.', and start with
// a letter or digit; names and ports are unique. A blank spec has no
// endpoints; an empty entry (",,", a trailing comma) is an error. Errors name
// the offending entry. It accepts exactly what the fabricks CLI and the shim
// accept.
func ParseSpec(spec string) ([]Endpoint, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	var endpoints []Endpoint
	names := map[string]string{}
	ports := map[int]string{}
	for _, raw := range strings.Split(spec, ",") {
		raw = strings.TrimSpace(raw)
		ep, err := parseEntry(raw)
		if err != nil {
			return nil, err
		}
		if first, ok := names[ep.Name]; ok {
			return nil, fmt.Errorf("listen entries %q and %q both use the name %q; names must be unique", first, raw, ep.Name)
		}
		if first, ok := ports[ep.Port]; ok {
			return nil, fmt.Errorf("listen entries %q and %q both use port %d; ports must be unique", first, raw, ep.Port)
		}
		names[ep.Name], ports[ep.Port] = raw, raw
		endpoints = append(endpoints, ep)
	}
	return endpoints, nil
}

func parseEntry(raw string) (Endpoint, error) {
	if raw == "" {
		return Endpoint{}, fmt.Errorf("empty listen entry (two commas in a row, or a trailing comma); %s", specSyntax)
	}
	fail := func(format string, args ...any) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("listen entry %q: %s; %s", raw, fmt.Sprintf(format, args...), specSyntax)
	}
	name, rest, named := strings.Cut(raw, "=")
	if named {
		name, rest = strings.TrimSpace(name), strings.TrimSpace(rest)
		if err := checkName(name); err != nil {
			return fail("%s", err)
		}
	} else {
		rest = raw
	}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		if protocol := rest[i+1:]; !strings.EqualFold(protocol, "tcp") {
			return fail("protocol %q is not supported, only tcp", protocol)
		}
		rest = rest[:i]
	}
	addr, port, err := parseAddr(rest)
	if err != nil {
		return fail("%s", err)
	}
	if !named {
		name = "port-" + strconv.Itoa(port)
	}
	return Endpoint{Name: name, Addr: net.JoinHostPort(addr.String(), strconv.Itoa(port)), Port: port}, nil
}

// parseAddr takes [ADDR:]PORT; a bare port means 0.0.0.0.
func parseAddr(text string) (netip.Addr, int, error) {
	if text == "" {
		return netip.Addr{}, 0, fmt.Errorf("no port")
	}
	if bracketed, ok := strings.CutPrefix(text, "["); ok {
		host, port, ok := strings.Cut(bracketed, "]:")
		if !ok {
			return netip.Addr{}, 0, fmt.Errorf("an IPv6 address needs a port after it: [ADDR]:PORT")
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return netip.Addr{}, 0, fmt.Errorf("%q is not an IPv6 address", host)
		}
		p, err := parsePort(port)
		return ip, p, err
	}
	i := strings.LastIndexByte(text, ':')
	if i < 0 {
		p, err := parsePort(text)
		return netip.IPv4Unspecified(), p, err
	}
	host, port := text[:i], text[i+1:]
	if strings.Contains(host, ":") {
		return netip.Addr{}, 0, fmt.Errorf("an IPv6 address goes in brackets, e.g. [::1]:9090")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, 0, fmt.Errorf("address %q is not an IP address (host names are not resolved); use an IP such as 127.0.0.1, or leave it out for 0.0.0.0", host)
	}
	p, err := parsePort(port)
	return ip, p, err
}

func parsePort(text string) (int, error) {
	if text == "" {
		return 0, fmt.Errorf("no port")
	}
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q is not a number", text)
		}
	}
	port, err := strconv.ParseUint(text, 10, 32)
	if err != nil || port < 1 || port > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", text)
	}
	return int(port), nil
}

func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("the name before `=` is empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name %q is longer than %d characters", name, maxNameLen)
	}
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-' && c != '_' && c != '.') {
			return fmt.Errorf("name %q may hold only letters, digits, `-`, `_` and `.`, and must start with a letter or digit", name)
		}
	}
	return nil
}

// namedFD is one NAME=FD pair of FABRICKS_LISTEN_FDS.
type namedFD struct {
	name string
	fd   int
}

// parseFDs parses a FABRICKS_LISTEN_FDS value ("http=4,admin=5").
func parseFDs(text string) ([]namedFD, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	var fds []namedFD
	for _, raw := range strings.Split(text, ",") {
		raw = strings.TrimSpace(raw)
		name, fdText, ok := strings.Cut(raw, "=")
		if !ok {
			return nil, fmt.Errorf("%s entry %q: expected NAME=FD", EnvListenFDs, raw)
		}
		if err := checkName(name); err != nil {
			return nil, fmt.Errorf("%s entry %q: %w", EnvListenFDs, raw, err)
		}
		fd, err := strconv.ParseUint(fdText, 10, 31)
		if err != nil {
			return nil, fmt.Errorf("%s entry %q: %q is not a descriptor number", EnvListenFDs, raw, fdText)
		}
		for _, seen := range fds {
			if seen.name == name {
				return nil, fmt.Errorf("%s names %q twice", EnvListenFDs, name)
			}
		}
		fds = append(fds, namedFD{name, int(fd)})
	}
	return fds, nil
}

func names[T any](items []T, name func(T) string) string {
	if len(items) == 0 {
		return "none"
	}
	out := make([]string, len(items))
	for i, item := range items {
		out[i] = name(item)
	}
	return strings.Join(out, ", ")
}
