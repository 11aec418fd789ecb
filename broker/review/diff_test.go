package review

import (
	"slices"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	day := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	appr := func(u, obj string, via ...string) Entry {
		return Entry{Kind: KindApprover, User: u, Object: obj, Via: via}
	}
	req := func(u, obj string, via ...string) Entry {
		return Entry{Kind: KindRequester, User: u, Object: obj, Via: via}
	}
	cust := func(u, acct string) Entry {
		return Entry{Kind: KindCustodian, User: u, Object: acct, Via: []string{"custodians"}}
	}
	tok := func(id, u string, expires time.Time, age int) Entry {
		return Entry{Kind: KindToken, User: u, Object: id, CreatedAt: day, ExpiresAt: expires, AgeDays: age}
	}
	base := []Entry{req("bob", "demo-ssh/ops", "dbas"), appr("bob", "demo-pg/readwrite", "approvers"), tok("tok_x", "alice", day.AddDate(1, 0, 0), 1)}
	cases := []struct {
		name      string
		prev, cur []Entry
		want      []string
	}{
		{"nothing changed", base, base, nil},
		{"first review: everything is added", nil, []Entry{appr("carol", "demo-pg/readwrite", "approvers")},
			[]string{"+ approver carol on demo-pg/readwrite (via approvers)"}},
		{"an added approver", base, append(slices.Clone(base), appr("carol", "demo-pg/readwrite", "approvers")),
			[]string{"+ approver carol on demo-pg/readwrite (via approvers)"}},
		{"a removed requester", base, base[1:], []string{"- requester bob on demo-ssh/ops (via dbas)"}},
		{"a new custodian", base, append(slices.Clone(base), cust("frank", "pg-admin")),
			[]string{"+ custodian frank on pg-admin (via custodians)"}},
		{"a new standing token", nil, []Entry{tok("tok_x", "alice", day.AddDate(1, 0, 0), 120)},
			[]string{"+ token tok_x of alice (age 120d)"}},
		{"a token only older: no line", base, []Entry{base[0], base[1], tok("tok_x", "alice", day.AddDate(1, 0, 0), 90)}, nil},
		{"a token with a new expiry is changed", base, []Entry{base[0], base[1], tok("tok_x", "alice", day.AddDate(2, 0, 0), 90)},
			[]string{"~ token tok_x of alice (age 90d) (expiry 2027-10-01 → 2028-10-01)"}},
		{"named directly now, not through the group", base, []Entry{base[0], appr("bob", "demo-pg/readwrite", "direct"), base[2]},
			[]string{"~ approver bob on demo-pg/readwrite (via direct) (was via approvers)"}},
		{"same user, another role: one added, one removed", []Entry{appr("bob", "demo-pg/readonly", "approvers")},
			[]Entry{appr("bob", "demo-pg/readwrite", "approvers")},
			[]string{"- approver bob on demo-pg/readonly (via approvers)", "+ approver bob on demo-pg/readwrite (via approvers)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lines := Diff(tc.prev, tc.cur)
			var got []string
			for i, l := range lines {
				if l.N != i+1 {
					t.Errorf("line %d numbered %d", i+1, l.N)
				}
				got = append(got, l.Text)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("diff:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// The snapshot hash covers the previous attested review's hash: the same
// snapshot after another history hashes differently.
func TestSnapshotHashChains(t *testing.T) {
	snap := []Entry{{Kind: KindApprover, User: "bob", Object: "db/rw", Via: []string{"approvers"}}}
	a, _ := hashSnapshot("", snap)
	b, _ := hashSnapshot("0000", snap)
	if a == b || a == "" {
		t.Fatalf("hash ignores the previous review's hash: %s %s", a, b)
	}
	r := Review{ID: "rev_a", PrevHash: "0000", Snapshot: snap, SnapshotHash: b}
	if p := verifyOne(r, "0000"); p != "" {
		t.Fatal(p)
	}
	r.Snapshot = append(r.Snapshot, Entry{Kind: KindApprover, User: "mallory", Object: "db/rw"})
	if p := verifyOne(r, "0000"); p == "" {
		t.Fatal("an entry slipped into a stored snapshot went unnoticed")
	}
}
