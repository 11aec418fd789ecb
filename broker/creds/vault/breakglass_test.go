package vault

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
)

// The break-glass static role's password can be read and works, rotating
// it makes the old one stop working, and KV v2 secrets get new versions.
func TestBreakGlassBacking(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before, err := e.issuer.StaticCreds(ctx, "sam", "breakglass")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, e.targetDSN(before.Username, before.Password))
	if err != nil {
		t.Fatalf("log in as the break-glass account: %v", err)
	}
	c.Close(ctx)
	if err := e.issuer.RotateStatic(ctx, "sam", "breakglass"); err != nil {
		t.Fatal(err)
	}
	after, err := e.issuer.StaticCreds(ctx, "sam", "breakglass")
	if err != nil {
		t.Fatal(err)
	}
	if after.Password == before.Password || after.Username != before.Username {
		t.Fatal("rotation did not change the password")
	}
	if !after.LastRotation.After(before.LastRotation) {
		t.Errorf("last rotation %s not after %s", after.LastRotation, before.LastRotation)
	}
	if c, err := pgx.Connect(ctx, e.targetDSN(before.Username, before.Password)); err == nil {
		c.Close(ctx)
		t.Error("old break-glass password still works after rotation")
	}
	c, err = pgx.Connect(ctx, e.targetDSN(after.Username, after.Password))
	if err != nil {
		t.Fatalf("new break-glass password: %v", err)
	}
	c.Close(ctx)

	path := "custos/breakglass/" + broker.NewID("acct")
	v1, err := e.issuer.WriteSecret(ctx, "sam", path, map[string]string{"password": "first-secret-value"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := e.issuer.WriteSecret(ctx, "sam", path, map[string]string{"password": "second-secret-value"})
	if err != nil {
		t.Fatal(err)
	}
	if v2 != v1+1 {
		t.Errorf("versions %d then %d", v1, v2)
	}
	got, ver, err := e.issuer.ReadSecret(ctx, "sam", path)
	if err != nil {
		t.Fatal(err)
	}
	if got["password"] != "second-secret-value" || ver != v2 {
		t.Errorf("read %v version %d", got, ver)
	}
	if _, _, err := e.issuer.ReadSecret(ctx, "sam", "custos/breakglass/none"); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("missing secret: %v", err)
	}
	for _, a := range []string{"creds.static.read", "creds.static.rotate", "creds.kv.write", "creds.kv.read"} {
		if len(e.auditRecords(t, a)) == 0 {
			t.Errorf("no %s audit record", a)
		}
	}
	for _, s := range []string{before.Password, after.Password, "second-secret-value"} {
		e.assertNoSecret(t, s)
	}
}
