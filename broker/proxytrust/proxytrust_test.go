package proxytrust

import (
	"net/netip"
	"testing"
)

func TestParse(t *testing.T) {
	tr, err := Parse([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.1.2.3": true, "::ffff:10.1.2.3": true, "192.0.2.7": true, "192.0.2.8": false,
		"2001:db8::1": true, "2001:db9::1": false, "11.0.0.1": false, "127.0.0.1": false,
	} {
		if got := tr.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	if (Set{}).Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("the zero Set trusts an address")
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "", "fe80::1%eth0"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
