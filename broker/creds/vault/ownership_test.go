package vault

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/creds"
)

// What a DBA creates under one grant belongs to the Vault role's stable
// owner, custos_readwrite, not to the grant's ephemeral login: the next
// grant's login alters and drops it. Objects the login owns itself (after
// SET ROLE NONE) are handed to the stable role at revocation.
func TestPostgresObjectsOutliveTheGrant(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := e.admin(t)

	today := e.grant(t, "dave", "pg1", "rw", time.Minute)
	first, err := e.issuer.ForSession(ctx, today, "ses_today")
	if err != nil {
		t.Fatal(err)
	}
	c := e.loginAs(t, first)
	var runsAs string
	if err := c.QueryRow(ctx, "SELECT current_user").Scan(&runsAs); err != nil || runsAs != "custos_readwrite" {
		t.Fatalf("current_user = %q, %v; want custos_readwrite", runsAs, err)
	}
	for _, sql := range []string{
		"CREATE TABLE made_today (id int PRIMARY KEY)",
		"INSERT INTO made_today VALUES (1)",
		"SET ROLE NONE",
		"CREATE TABLE made_as_login (id int)",
	} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	c.Close(ctx)
	if got := tableOwner(t, admin, "made_as_login"); got != first.Username {
		t.Fatalf("made_as_login owned by %q, want the login %q before revocation", got, first.Username)
	}
	e.endGrant(t, today, broker.GrantExpired, true)
	e.waitLeaseGone(t, first.LeaseID, 5*time.Second)
	for _, table := range []string{"made_today", "made_as_login"} {
		if got := tableOwner(t, admin, table); got != "custos_readwrite" {
			t.Errorf("%s owned by %q after revocation, want custos_readwrite", table, got)
		}
	}

	tomorrow := e.grant(t, "erin", "pg1", "rw", time.Minute)
	second, err := e.issuer.ForSession(ctx, tomorrow, "ses_tomorrow")
	if err != nil {
		t.Fatal(err)
	}
	c = e.loginAs(t, second)
	for _, sql := range []string{
		"ALTER TABLE made_today ADD COLUMN note text",
		"UPDATE made_today SET note = 'altered'",
		"DROP TABLE made_today",
		"ALTER TABLE made_as_login RENAME TO renamed",
		"DROP TABLE renamed",
	} {
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Errorf("next grant: %s: %v", sql, err)
		}
	}
	c.Close(ctx)
	e.endGrant(t, tomorrow, broker.GrantExpired, true)
	e.waitLeaseGone(t, second.LeaseID, 5*time.Second)
}

// loginAs connects to the target with an issued login.
func (e *env) loginAs(t *testing.T, l creds.Lease) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.targetDSN(l.Username, l.Password))
	if err != nil {
		t.Fatalf("log in as %s: %v", l.Username, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// tableOwner is the owner of a table in schema public, or "" when there is
// none.
func tableOwner(t *testing.T, admin *pgx.Conn, table string) string {
	t.Helper()
	var owner string
	err := admin.QueryRow(context.Background(), "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1", table).Scan(&owner)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return owner
}
