package fabricks

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSpecDocumentedForms(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []Endpoint
	}{
		{"http=8080", []Endpoint{{"http", "0.0.0.0:8080", 8080}}},
		{"http=0.0.0.0:8080,admin=[::1]:9090", []Endpoint{
			{"http", "0.0.0.0:8080", 8080}, {"admin", "[::1]:9090", 9090}}},
		{"8080, 127.0.0.1:9090/tcp ,metrics=9100/TCP", []Endpoint{
			{"port-8080", "0.0.0.0:8080", 8080}, {"port-9090", "127.0.0.1:9090", 9090}, {"metrics", "0.0.0.0:9100", 9100}}},
		{"a=[::]:1,b.c_d-e=65535", []Endpoint{{"a", "[::]:1", 1}, {"b.c_d-e", "0.0.0.0:65535", 65535}}},
		{"", nil},
		{"  ", nil},
	} {
		got, err := ParseSpec(tc.spec)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.spec, got, tc.want)
		}
	}
}

// The same cases as the Rust parser's tests (shim/listen), so both accept and
// refuse the same specs with the same words.
func TestParseSpecErrorsNameTheEntry(t *testing.T) {
	for _, tc := range []struct{ spec, entry, why string }{
		{"http=", `"http="`, "no port"},
		{"=8080", `"=8080"`, "name before `=` is empty"},
		{"http=80a", `"http=80a"`, "is not a number"},
		{"http=-1", `"http=-1"`, "is not a number"},
		{"h t=80", `"h t=80"`, "may hold only letters"},
		{"-x=80", `"-x=80"`, "must start with a letter or digit"},
		{"http=8080/udp", `"http=8080/udp"`, "only tcp"},
		{"http=localhost:8080", `"http=localhost:8080"`, "not an IP address"},
		{"http=::1:8080", `"http=::1:8080"`, "in brackets"},
		{"http=[::1]", `"http=[::1]"`, "needs a port"},
		{"http=[nope]:80", `"http=[nope]:80"`, "not an IPv6 address"},
		{"http=[fe80::1%eth0]:80", `"http=[fe80::1%eth0]:80"`, "not an IPv6 address"},
		{"http=[1.2.3.4]:80", `"http=[1.2.3.4]:80"`, "not an IPv6 address"},
		{"http=1.2.3.4:", `"http=1.2.3.4:"`, "no port"},
		{"a=1=2", `"a=1=2"`, "is not"},
		{"http=0", `"http=0"`, "port 0 is out of range 1-65535"},
		{"http=65536", `"http=65536"`, "port 65536 is out of range 1-65535"},
		{"99999999999", `"99999999999"`, "port 99999999999 is out of range 1-65535"},
		{strings.Repeat("n", 64) + "=80", strings.Repeat("n", 64), "longer than 63"},
		{"http=8080,", "empty listen entry", "trailing comma"},
		{",http=8080", "empty listen entry", "two commas"},
		{"a=1,,b=2", "empty listen entry", "two commas"},
		{"http=8080,http=9090", `"http=8080" and "http=9090"`, `name "http"`},
		{"a=8080,b=127.0.0.1:8080", `"a=8080" and "b=127.0.0.1:8080"`, "port 8080"},
		{"8080,port-8080=9090", `"8080" and "port-8080=9090"`, `name "port-8080"`},
	} {
		_, err := ParseSpec(tc.spec)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded", tc.spec)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.entry) || !strings.Contains(msg, tc.why) {
			t.Errorf("ParseSpec(%q): %q lacks %q or %q", tc.spec, msg, tc.entry, tc.why)
		}
	}
}

func TestParseFDs(t *testing.T) {
	got, err := parseFDs("http=4, admin=5")
	if err != nil {
		t.Fatal(err)
	}
	if want := []namedFD{{"http", 4}, {"admin", 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("parseFDs = %+v, want %+v", got, want)
	}
	if got, err := parseFDs(""); err != nil || got != nil {
		t.Fatalf("parseFDs(\"\") = %v, %v", got, err)
	}
	for _, tc := range []struct{ text, why string }{
		{"http", "expected NAME=FD"},
		{"http=x", "not a descriptor number"},
		{"http=-4", "not a descriptor number"},
		{"http=4,http=5", "twice"},
		{"=4", "empty"},
		{"a b=4", "may hold only"},
	} {
		_, err := parseFDs(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), EnvListenFDs) {
			t.Errorf("parseFDs(%q) = %v, want an error about %q naming %s", tc.text, err, tc.why, EnvListenFDs)
		}
	}
}
