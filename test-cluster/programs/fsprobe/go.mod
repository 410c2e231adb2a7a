module github.com/fabricks-dev/fabricks/test-cluster/programs/fsprobe

go 1.24
