package policy

import (
	"testing"
	"time"

	"github.com/custos-pam/custos/broker/config"
)

// dir is the directory every test uses. Names share one namespace.
var dir = GroupsFromConfig([]config.Group{
	{Name: "dba", Members: []string{"alice", "bob", "carol"}},
	{Name: "sre", Members: []string{"dave", "erin"}},
	{Name: "oncall", Members: []string{"bob", "dave"}},
	{Name: "empty"},
})

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

// at returns the instant with the given wall clock in loc.
func at(loc *time.Location, y int, m time.Month, d, h, mi int) time.Time {
	return time.Date(y, m, d, h, mi, 0, 0, loc)
}

func utc(y int, m time.Month, d, h, mi int) time.Time { return at(time.UTC, y, m, d, h, mi) }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v (code %q)", err, CodeOf(err))
		}
		return
	}
	if err == nil {
		t.Fatalf("want refusal %q, got nil", code)
	}
	if got := CodeOf(err); got != code {
		t.Fatalf("want refusal %q, got %q (%v)", code, got, err)
	}
	if err.Error() == "" {
		t.Fatalf("refusal %q has no message", code)
	}
}

func TestGroups(t *testing.T) {
	if got := dir.GroupsOf("bob"); len(got) != 2 || got[0] != "dba" || got[1] != "oncall" {
		t.Fatalf("GroupsOf(bob) = %v", got)
	}
	if m, ok := dir.Members("empty"); !ok || len(m) != 0 {
		t.Fatalf("Members(empty) = %v, %v", m, ok)
	}
	if _, ok := dir.Members("alice"); ok {
		t.Fatal("a user is not a group")
	}
}

func TestCodeOfWrapped(t *testing.T) {
	err := CheckRequest(config.Policy{Requesters: []string{"dba"}, Approvers: []string{"sre"}}, dir, "dave", time.Hour, "", "", utc(2026, 1, 5, 12, 0))
	wrapped := &wrapErr{err}
	if CodeOf(wrapped) != CodeNotRequester {
		t.Fatalf("CodeOf through a wrapper = %q", CodeOf(wrapped))
	}
	if e, ok := err.(interface{ ErrorCode() string }); !ok || e.ErrorCode() != CodeNotRequester {
		t.Fatalf("ErrorCode() missing on %#v", err)
	}
}

type wrapErr struct{ err error }

func (w *wrapErr) Error() string { return "access: " + w.err.Error() }
func (w *wrapErr) Unwrap() error { return w.err }
