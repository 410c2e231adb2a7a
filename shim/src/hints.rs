//! How to fix a module the engine cannot run, in the terms of the tools that make images
//! for this shim.

use fabricks_engine::Problem;

pub fn shim(problem: Problem) -> Option<&'static str> {
    Some(match problem {
        Problem::NotWasm => {
            "the image entrypoint must name a wasm module: build it with `fabricks build` (Go: GOOS=wasip1 GOARCH=wasm)"
        }
        Problem::NoEntryPoint => {
            "build a Go `package main` normally for a command, or with `fabricks build --mode reactor` for a reactor"
        }
        Problem::NotCommand => "a Go program needs `package main` and must not be built with -buildmode=c-shared",
        Problem::Imports => "build it for WASI preview 1 (Go: GOOS=wasip1 GOARCH=wasm) or as a WASI 0.2 component (wasi:cli/command, wasi:http/proxy), with no other host imports",
        Problem::NotHttpReactor => {
            "register the handler with fabricks.Handle (Go SDK github.com/fabricks-dev/fabricks/sdk/go) and build with \
             `fabricks build --mode reactor` (which passes -buildmode=c-shared -tags fabricks_reactor)"
        }
        Problem::AbiMismatch => "rebuild it with the Fabricks Go SDK that matches this shim",
        Problem::Invalid => return None,
    })
}
