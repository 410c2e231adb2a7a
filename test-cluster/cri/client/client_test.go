package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestParseLogJoinsPartialLinesAndSplitsStreams(t *testing.T) {
	in := strings.Join([]string{
		"2026-01-02T03:04:05.000000001Z stdout P Hello ",
		"2026-01-02T03:04:05.000000002Z stdout F from Fabricks!",
		"2026-01-02T03:04:05.000000003Z stderr F go-hello: oops",
		"2026-01-02T03:04:05.000000004Z stdout F",
		"garbage",
		"2026-01-02T03:04:05.000000005Z other F skipped",
	}, "\n") + "\n"
	var got []string
	err := ParseLog(strings.NewReader(in), func(stream, content string) error {
		got = append(got, stream+":"+content)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stdout:Hello ", "stdout:from Fabricks!\n", "stderr:go-hello: oops\n", "stdout:\n"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ParseLog gave %q, want %q", got, want)
	}
}

func TestReadLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	content := "T stdout F a\nT stderr F b\nT stdout P c\nT stdout F d\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if l.Stdout != "a\ncd\n" || l.Stderr != "b\n" {
		t.Errorf("ReadLog = %+v, want stdout \"a\\ncd\\n\", stderr \"b\\n\"", l)
	}
}

func TestLoadJSONTakesBothFieldSpellings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pod.json")
	body := `{"metadata": {"name": "p", "uid": "u"}, "log_directory": "/x", "dnsConfig": {"servers": ["1.1.1.1"]}}`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg cri.PodSandboxConfig
	if err := LoadJSON(path, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Metadata.GetName() != "p" || cfg.LogDirectory != "/x" || len(cfg.DnsConfig.GetServers()) != 1 {
		t.Errorf("LoadJSON read %v", &cfg)
	}
	if err := os.WriteFile(path, []byte(`{"metadata": {"nmae": "p"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := LoadJSON(path, &cfg); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("a misspelt field gave %v, want an error naming %s", err, path)
	}
}
