package breakglass

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/deploy/devstack"
)

func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }

// TestPGConnectTrustsTargetCA: drill probes and rotation checks log in to
// a verify-full target through its own ca_cert, as the proxy does; without
// it the rotation check could not tell a refused old password from an
// untrusted certificate, and every rotation of such a target failed.
func TestPGConnectTrustsTargetCA(t *testing.T) {
	pg := devstack.StartPostgres(t)
	target := func(ca string) *config.Target {
		return &config.Target{Name: "db", Kind: "postgres", Address: pg.Host + ":" + strconv.Itoa(pg.Port),
			Postgres: config.TargetPostgres{Database: "postgres", TLS: "verify-full", CACert: ca}}
	}
	ctx := context.Background()

	c, err := pgConnect(ctx, target(pg.CACertPath), pg.User, pg.Password)
	if err != nil {
		t.Fatalf("verify-full with the target's ca_cert: %v", err)
	}
	_ = c.Close(ctx)

	// A wrong password is refused by PostgreSQL itself (28P01), which is
	// what the rotation check needs to see.
	if _, err := pgConnect(ctx, target(pg.CACertPath), pg.User, "wrong"); !pgRejected(err) {
		t.Errorf("wrong password over verify-full: %v, want invalid_password", err)
	}

	// Without the CA the certificate is not trusted, and that is no
	// password refusal.
	_, err = pgConnect(ctx, target(""), pg.User, pg.Password)
	if err == nil || pgRejected(err) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("verify-full without ca_cert: %v", err)
	}
}
