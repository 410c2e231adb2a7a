// Command bundle-probe stands in for a .NET AppBundle's dotnet.wasm where no .NET SDK
// exists: built as dotnet.wasm into a directory laid out like an AppBundle, it opens the
// bundle's files the way the .NET WASI runtime does and reports what it finds, so a test
// can tell whether a runtime (the shim, `fabricks run`) shows a module its bundle.
//
// What the runtime opens, from dotnet/runtime src/mono/wasi: `/runtimeconfig.bin` by that
// absolute path (runtime/driver.c, load_runtimeconfig), the entry assembly as
// `managed/<App>.dll` (build/WasiApp.targets writes that name into
// dotnet_wasi_getentrypointassemblyname) and `./icudt.dat` (driver.c, load_icu_data) —
// relative paths that wasi-libc resolves from its working directory, which starts as `/`
// whatever PWD says. Go would resolve them from PWD, so they are joined to `/` here.
//
// Usage (as the image runs it): dotnet.wasm APP [ARGS...]. Exit 0 when the runtime config
// and the entry assembly are readable, 1 when not.
package main

import (
	"fmt"
	"os"
	"path"
	"sort"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "bundle-probe: usage: dotnet.wasm APP [ARGS...]")
		os.Exit(2)
	}
	app := os.Args[1]
	fmt.Printf("bundle-probe: app %s, args %q\n", app, os.Args[2:])
	fmt.Printf("bundle-probe: / holds %s\n", listing("/"))
	fmt.Printf("bundle-probe: /managed holds %s\n", listing("/managed"))

	ok := report("/runtimeconfig.bin", true)
	ok = report(wasiLibcPath("managed/"+app+".dll"), true) && ok
	report(wasiLibcPath("./icudt.dat"), false)
	if !ok {
		fmt.Println("bundle-probe: the bundle is not visible as the .NET runtime needs it")
		os.Exit(1)
	}
	fmt.Println("bundle-probe: the bundle is visible as the .NET runtime needs it")
}

// wasiLibcPath is where wasi-libc, starting in `/`, looks for a relative path.
func wasiLibcPath(relative string) string {
	return path.Join("/", relative)
}

// report prints whether the file can be read; a missing optional file is only noted.
func report(file string, required bool) bool {
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		fmt.Printf("bundle-probe: read %s (%d bytes)\n", file, len(data))
		return true
	case required:
		fmt.Printf("bundle-probe: cannot read %s: %v\n", file, err)
		return false
	default:
		fmt.Printf("bundle-probe: no %s (optional: %v)\n", file, err)
		return true
	}
}

func listing(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Sprintf("nothing readable (%v)", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			name += "/"
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return fmt.Sprintf("%q", names)
}
