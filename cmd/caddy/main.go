// Command caddy is Caddy with its standard modules and sechard built in.
//
//	go build -o caddy ./cmd/caddy
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/sechard/sechard"
)

func main() {
	caddycmd.Main()
}
