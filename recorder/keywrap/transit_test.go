package keywrap

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"

	"github.com/custos-pam/custos/deploy/devstack"
)

// brokerVault returns a client holding the broker's own token from the
// shared bootstrap (deploy/vault/bootstrap.sh), so the test also proves the
// custos-broker policy allows what recording needs.
func brokerVault(t *testing.T) *vault.Client {
	t.Helper()
	v := devstack.StartVault(t)
	v.Bootstrap(t, devstack.StartPostgres(t))
	cfg := vault.DefaultConfig()
	cfg.Address = v.Addr
	c, err := vault.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(v.BrokerToken)
	return c
}

func TestTransitWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	c := brokerVault(t)
	tr := NewTransit(c, "", "")
	key, w, err := tr.NewDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != DataKeySize || w.Wrapper != "vault-transit" || w.KeyID != "transit/custos-recordings" ||
		!strings.HasPrefix(w.Ciphertext, "vault:v") {
		t.Fatalf("key %d bytes, wrapped %+v", len(key), w)
	}
	got, err := tr.Unwrap(ctx, w)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap: %v", err)
	}
	key2, _, _ := tr.NewDataKey(ctx)
	if bytes.Equal(key, key2) {
		t.Fatal("data keys repeat")
	}

	forged := w
	forged.Ciphertext = w.Ciphertext[:len(w.Ciphertext)-4] + "AAAA"
	if _, err := tr.Unwrap(ctx, forged); err == nil {
		t.Fatal("unwrapped a forged ciphertext")
	}
	if _, err := tr.Unwrap(ctx, Wrapped{Wrapper: "local", KeyID: "local:1", Ciphertext: "x"}); !errors.Is(err, ErrWrongWrapper) {
		t.Fatalf("local key: err = %v", err)
	}
	other := NewTransit(c, "transit", "not-custos")
	if _, _, err := other.NewDataKey(ctx); err == nil {
		t.Fatal("the broker token used a transit key outside its policy")
	}
}
