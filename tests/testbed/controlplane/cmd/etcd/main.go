// Command etcd is the etcd server at the version that the pinned kube-apiserver is tested
// with; it exists so the test bed can build it from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
