//go:build !custos_testclock

package app

import "github.com/custos-pam/custos/broker/clock"

// newClock is the broker's clock for grant ends: the system's wall and
// monotonic clocks. (Built with the custos_testclock tag, clock_testclock.go
// offsets the wall clock for the clock-step tests instead.)
func newClock() *clock.Clock { return clock.New(clock.Options{}) }
