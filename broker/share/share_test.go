package share_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/share"
	"github.com/custos-pam/custos/broker/store/postgres"
	"github.com/custos-pam/custos/broker/store/sqlite"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

var stores = map[string]func(t *testing.T) broker.Store{
	"sqlite": func(t *testing.T) broker.Store {
		st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	},
	"postgres": func(t *testing.T) broker.Store {
		pg := devstack.StartPostgres(t)
		st, err := postgres.Open(t.Context(), pg.DSN(pg.CreateDatabase(t, "share")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	},
}

// TestLinkLifecycle, on both stores: a link resolves until revoked or
// expired, each refusal names why (for the audit log), the store holds
// only the token's hash, and the audit log tells creation, uses, refusals
// and revocation without the token.
func TestLinkLifecycle(t *testing.T) {
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
			svc := &share.Service{Store: st, Audit: audit.NewLog(st), Now: func() time.Time { return now }}
			ctx := t.Context()
			from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
			ev, evTok, err := svc.Create(ctx, "sam", share.NewLink{Kind: share.KindEvidence, Target: "db", From: from,
				To: from.AddDate(0, 1, 0), TTL: time.Hour, Note: "inspection"})
			if err != nil {
				t.Fatal(err)
			}
			se, seTok, err := svc.Create(ctx, "sam", share.NewLink{Kind: share.KindSession, SessionID: "ses_1", TTL: 2 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if l, err := svc.Resolve(ctx, evTok, "192.0.2.7"); err != nil || l.ID != ev.ID || l.Uses != 1 {
				t.Fatalf("resolve: %+v %v", l, err)
			}
			if _, err := svc.Resolve(ctx, evTok+"x", "192.0.2.7"); !errors.Is(err, share.ErrUnknown) {
				t.Errorf("a wrong token: %v, want unknown", err)
			}
			if _, err := svc.Revoke(ctx, "sam", se.ID, "done"); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Resolve(ctx, seTok, "192.0.2.7"); !errors.Is(err, share.ErrRevoked) {
				t.Errorf("revoked: %v", err)
			}
			now = now.Add(time.Hour) // ev's TTL is up
			if _, err := svc.Resolve(ctx, evTok, "192.0.2.7"); !errors.Is(err, share.ErrExpired) {
				t.Errorf("expired: %v", err)
			}
			if _, err := svc.Revoke(ctx, "sam", "shr_none", ""); broker.CodeOf(err) != "no_share" {
				t.Errorf("revoke unknown: %v", err)
			}

			var raw []byte
			if err := st.View(ctx, func(tx broker.Tx) error { raw, err = tx.GetState(share.StateKey); return err }); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), evTok) || strings.Contains(string(raw), seTok) || !strings.Contains(string(raw), share.Hash(evTok)) {
				t.Errorf("the store must hold the hash of each token, never the token")
			}
			links, _ := svc.List(ctx)
			for _, l := range links {
				if l.Hash != "" {
					t.Errorf("List shows a hash")
				}
			}
			var recs []broker.AuditRecord
			_ = st.View(ctx, func(tx broker.Tx) error {
				recs, err = tx.ListAudit(broker.AuditFilter{ActionPrefix: "share."})
				return err
			})
			var got []string
			for _, r := range recs {
				if strings.Contains(string(r.Details), evTok) || strings.Contains(string(r.Details), seTok) {
					t.Fatalf("audit record %s holds a token", r.Action)
				}
				got = append(got, r.Action+" "+r.Outcome+" "+r.Reason)
			}
			want := []string{"share.create success inspection", "share.create success ", "share.use success ",
				"share.revoke success done", "share.use denied link revoked", "share.use denied link expired"}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("audit:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestCreateRefuses: links that share nothing or live too long.
func TestCreateRefuses(t *testing.T) {
	st := stores["sqlite"](t)
	svc := &share.Service{Store: st, Audit: audit.NewLog(st)}
	from := time.Now()
	for name, in := range map[string]share.NewLink{
		"no kind":                 {SessionID: "ses_1"},
		"session without id":      {Kind: share.KindSession},
		"evidence without target": {Kind: share.KindEvidence, From: from, To: from.Add(time.Hour)},
		"reversed period":         {Kind: share.KindEvidence, Target: "db", From: from, To: from.Add(-time.Hour)},
		"too long":                {Kind: share.KindSession, SessionID: "ses_1", TTL: share.MaxTTL + time.Hour},
	} {
		if _, _, err := svc.Create(t.Context(), "sam", in); err == nil {
			t.Errorf("%s: created", name)
		}
	}
}
