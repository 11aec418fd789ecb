// Command custos is the Custos broker and its command-line client.
package main

import (
	"os"

	"github.com/custos-pam/custos/cmd/custos/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
