// Package sechard is a Caddy HTTP handler that hardens an API at the edge.
package sechard
