module github.com/fabricks-dev/fabricks/sdk/go

go 1.22
