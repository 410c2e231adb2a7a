module github.com/fabricks-dev/fabricks/test-cluster/bundle-probe

go 1.24
