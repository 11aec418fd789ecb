package lifecycle

import (
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/event"
)

// The header carries the target's policy for the session index: a
// PostgreSQL session's SQL is indexed normalised unless the target says
// otherwise.
func TestHeaderIndexSQLPolicy(t *testing.T) {
	c := &Core{cfg: Config{Protocol: "postgres"}}
	for _, tc := range []struct{ set, want string }{
		{"", event.IndexSQLNormalized},
		{"full", event.IndexSQLFull},
		{"none", event.IndexSQLNone},
	} {
		s := &Session{c: c, Start: Start{Grant: broker.Grant{ID: "grt_1"},
			Target: &config.Target{Name: "db", Kind: "postgres", Recording: config.TargetRecording{IndexSQL: tc.set}}}}
		if got := s.Header().Policy.IndexSQL; got != tc.want {
			t.Errorf("index_sql %q: header policy %q, want %q", tc.set, got, tc.want)
		}
	}
}
