//go:build wasip1 && go1.24 && fabricks_reactor

package fabricks

// The wasm side of the Fabricks HTTP reactor ABI, version 1
// (docs/reactor-abi.md): the exports the host calls and the host functions
// they import. Only in reactor builds (fabricks build --mode reactor passes
// -buildmode=c-shared -tags fabricks_reactor): a command module must import
// nothing beyond WASI.

import "unsafe"

//go:wasmimport fabricks_http request_read
func requestRead(ptr unsafe.Pointer, n uint32) int32

//go:wasmimport fabricks_http response_head
func responseHead(status uint32, ptr unsafe.Pointer, n uint32) int32

//go:wasmimport fabricks_http response_write
func responseWrite(ptr unsafe.Pointer, n uint32) int32

// headBuf holds the request head the host writes; a package variable, so the
// (non-moving) garbage collector keeps it where the host was told it is.
var headBuf = make([]byte, 4096)

//go:wasmexport fabricks_http_abi_version
func abiVersion() uint32 { return ABIVersion }

//go:wasmexport fabricks_http_alloc
func alloc(n uint32) uint32 {
	if int(n) > len(headBuf) {
		headBuf = make([]byte, n)
	}
	return uint32(uintptr(unsafe.Pointer(&headBuf[0])))
}

//go:wasmexport fabricks_http_handle
func handle(n uint32) uint32 {
	serveReactor(wasmHost{}, headBuf[:n], handler)
	return 0
}

// wasmHost is the host as the ABI's imports.
type wasmHost struct{}

func (wasmHost) readBody(p []byte) int32 {
	return requestRead(unsafe.Pointer(&p[0]), uint32(len(p)))
}

func (wasmHost) sendHead(status int, headers string) int32 {
	var p unsafe.Pointer
	if len(headers) > 0 {
		p = unsafe.Pointer(unsafe.StringData(headers))
	}
	return responseHead(uint32(status), p, uint32(len(headers)))
}

func (wasmHost) writeBody(p []byte) int32 {
	if len(p) == 0 {
		return 0
	}
	return responseWrite(unsafe.Pointer(&p[0]), uint32(len(p)))
}
