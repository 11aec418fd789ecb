package guard

import "testing"

func BenchmarkClassifySelect(b *testing.B) {
	c := New([]string{"public.subjects"})
	for b.Loop() {
		if _, err := c.Classify("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"); err != nil {
			b.Fatal(err)
		}
	}
}
