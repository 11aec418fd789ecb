//go:build race

package pgproxy

// raceEnabled is set under the race detector, which empties sync.Pools at
// random and so changes allocation counts.
const raceEnabled = true
