module fabricks/examples/go-hello

go 1.24
