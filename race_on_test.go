//go:build race

package sechard

// raceEnabled: the tests run with -race, so the Caddy binary the end-to-end
// tests start is built with it too, and real traffic is race-checked.
const raceEnabled = true
