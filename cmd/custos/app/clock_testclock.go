//go:build custos_testclock

package app

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custos-pam/custos/broker/clock"
)

// newClock, in a binary built for the clock-step tests only, reads the
// wall clock as the system's plus an offset the test writes (a Go
// duration such as "1h" or "-1h") to the file $CUSTOS_TESTCLOCK_FILE; the
// monotonic clock stays the system's, as a real step leaves it. The
// offset is re-read every 20ms.
func newClock() *clock.Clock {
	var offset atomic.Int64
	path := os.Getenv("CUSTOS_TESTCLOCK_FILE")
	fmt.Fprintf(os.Stderr, "custos testclock: TEST BUILD, the wall clock for grants is offset by the file %q\n", path)
	read := func() {
		b, err := os.ReadFile(path)
		if err != nil {
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(string(b)))
		if err != nil {
			return
		}
		if old := time.Duration(offset.Swap(int64(d))); old != d {
			fmt.Fprintf(os.Stderr, "custos testclock: wall clock offset %v\n", d)
		}
	}
	if path != "" {
		read()
		go func() {
			for range time.Tick(20 * time.Millisecond) {
				read()
			}
		}()
	}
	return clock.New(clock.Options{Wall: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
}
