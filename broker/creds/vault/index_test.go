package vault

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/store/sqlite"
)

// Two brokers sharing a store keep one lease index without dropping each
// other's records, and a fresh one reads it all back.
func TestLeaseIndexSharedByReplicas(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "custos.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	newIssuer := func() *Issuer {
		c, err := New(config.Vault{Address: "http://127.0.0.1:1", Token: "t"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		i, err := NewIssuer(Options{Client: c, Config: &config.Config{}, Store: st, Audit: audit.NewLog(st)})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	a, b := newIssuer(), newIssuer()
	rec := func(id, grant string) leaseRecord {
		return leaseRecord{LeaseID: id, GrantID: grant, Kind: "postgres", IssuedAt: time.Now().UTC(), GrantEnd: time.Now().Add(time.Hour).UTC()}
	}
	if err := a.remember(ctx, rec("l1", "g1")); err != nil {
		t.Fatal(err)
	}
	if err := b.remember(ctx, rec("l2", "g2")); err != nil {
		t.Fatal(err)
	}
	if err := a.remember(ctx, rec("l3", "g1")); err != nil {
		t.Fatal(err)
	}
	if err := b.drop(ctx, "l1"); err != nil {
		t.Fatal(err)
	}
	fresh := newIssuer()
	if err := fresh.load(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range fresh.records(func(leaseRecord) bool { return true }) {
		got[r.LeaseID] = true
	}
	if len(got) != 2 || !got["l2"] || !got["l3"] {
		t.Fatalf("index holds %v, want l2 and l3", got)
	}
}

func TestNamesForGrant(t *testing.T) {
	g := broker.Grant{ID: "gr_abc", User: "alice"}
	for _, tc := range []struct{ got, want string }{
		{displayName(g, ""), "alice-gr_abc"},
		{displayName(g, "ses_1"), "alice-gr_abc-ses_1"},
		{KeyID("alice", "gr_abc", "ses_1"), "custos:user=alice:grant=gr_abc:session=ses_1"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
