//go:build !race

package sechard

const raceEnabled = false
