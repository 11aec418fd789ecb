package devstack

import "testing"

// Unavailable skips the test with msg, or fails it under CI=true: for a
// missing component Require cannot find by its executable (a Python
// module, a feature a tool was built without).
func Unavailable(tb testing.TB, msg string) {
	tb.Helper()
	unavailable(tb, msg)
}
