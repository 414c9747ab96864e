//go:build race

package routing

// raceEnabled: the race detector maps terabytes of shadow memory, so a
// limit on the address space would stop the process at once.
const raceEnabled = true
