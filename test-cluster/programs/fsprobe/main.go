// fsprobe: what an ordinary program expects of a container's filesystem, checked from
// inside one. Each check prints `ok NAME` or `FAIL NAME: why`; the exit status is the
// number of failures. Built for wasip1 by the end-to-end suites, run under the shim.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

var failures int

func check(name string, err error) {
	if err != nil {
		failures++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	fmt.Printf("ok %s\n", name)
}

func main() {
	fill := flag.String("fill", "", "write --mib MiB of zeros to this file and report how it went")
	mib := flag.Int("mib", 1, "MiB for --fill")
	flag.Parse()
	if *fill != "" {
		check(fmt.Sprintf("fill %s with %d MiB", *fill, *mib), fillFile(*fill, *mib))
		os.Exit(failures)
	}
	check("/dev/null takes writes and reads empty", devNull())
	check("/dev/zero reads zeros", devZero())
	check("/dev/urandom and /dev/random read random bytes", devRandom())
	check("/dev/full refuses writes with ENOSPC", devFull())
	check("os.TempDir() is writable", tempDir())
	os.Exit(failures)
}

func devNull() error {
	f, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write([]byte("discarded")); err != nil {
		return err
	}
	n, err := f.Read(make([]byte, 8))
	if n != 0 || err != io.EOF {
		return fmt.Errorf("read %d bytes, %v; want 0, EOF", n, err)
	}
	return nil
}

func devZero() error {
	b, err := readN("/dev/zero", 4096)
	if err == nil && !bytes.Equal(b, make([]byte, len(b))) {
		err = errors.New("non-zero bytes")
	}
	return err
}

func devRandom() error {
	for _, path := range []string{"/dev/urandom", "/dev/random"} {
		a, err := readN(path, 32)
		if err != nil {
			return err
		}
		b, err := readN(path, 32)
		if err != nil {
			return err
		}
		if bytes.Equal(a, b) {
			return fmt.Errorf("%s gave the same 32 bytes twice", path)
		}
	}
	return nil
}

func devFull() error {
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte("x"))
	if !errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("write gave %v, want ENOSPC", err)
	}
	return nil
}

func tempDir() error {
	path := filepath.Join(os.TempDir(), "fsprobe")
	if err := os.WriteFile(path, []byte("temporary"), 0o600); err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err == nil && string(b) != "temporary" {
		err = fmt.Errorf("read back %q", b)
	}
	return errors.Join(err, os.Remove(path))
}

func fillFile(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for i := 0; i < mib; i++ {
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return fmt.Errorf("after %d MiB: %w", i, err)
		}
	}
	return f.Close()
}

func readN(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	_, err = io.ReadFull(f, b)
	return b, err
}
