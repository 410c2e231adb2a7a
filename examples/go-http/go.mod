module fabricks/examples/go-http

go 1.24

require github.com/fabricks-dev/fabricks/sdk/go v0.0.0-00010101000000-000000000000

// The SDK from this repository: builds need no network.
replace github.com/fabricks-dev/fabricks/sdk/go => ../../sdk/go
