// Command ferry moves services between Kubernetes clusters gradually, as
// GitOps. All of its commands live in package cli so tests run them
// in-process.
package main

import (
	"os"

	"github.com/ferry-dev/ferry/cmd/ferry/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
