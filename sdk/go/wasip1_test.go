//go:build !wasip1

package fabricks

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsForWasip1 compiles and vets the package (tests included) for
// GOOS=wasip1 GOARCH=wasm, so the wasip1-only files cannot rot unnoticed.
func TestBuildsForWasip1(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles; skipped with -short")
	}
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
		cmd := exec.Command(gotool, args...)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOOS=wasip1 GOARCH=wasm go %v: %v\n%s", args, err, out)
		}
	}
}
