package config

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProductionConfigIsHardened parses the hardened example config that
// deploy/systemd installs and checks it keeps the settings it exists to
// show: TLS on every hop, a shared PostgreSQL store, S3 recordings
// wrapped by Vault Transit, Vault AppRole, a metrics token, frequent audit
// checkpoints, and no secret written inline.
func TestProductionConfigIsHardened(t *testing.T) {
	b, err := os.ReadFile("../../deploy/custos.production.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	check := func(ok bool, what string) {
		t.Helper()
		if !ok {
			t.Errorf("deploy/custos.production.yaml: %s", what)
		}
	}
	check(c.Listen.TLSCert != "" && c.Listen.TLSKey != "", "listen.tls_cert and tls_key must be set")
	check(!c.Listen.InsecureHTTP, "listen.insecure_http must be off")
	check(c.Listen.MetricsToken.IsSet(), "listen.metrics_token must be set")
	check(strings.HasPrefix(c.PublicURL, "https://"), "public_url must be https")
	check(c.Store.Driver == "postgres", "store.driver must be postgres (shared by replicas)")
	check(c.Recording.Store == "s3" && !c.Recording.S3.Insecure, "recording.store must be s3 over TLS")
	check(c.Recording.Encryption == "vault", "recording.encryption must be vault")
	check(c.Vault.RoleID.IsSet() && c.Vault.SecretID.IsSet() && !c.Vault.Token.IsSet(),
		"vault must log in with AppRole, not a token")
	check(c.Vault.CACert != "" && strings.HasPrefix(c.Vault.Address, "https://"), "vault must be https with ca_cert")
	check(c.Audit.CheckpointInterval.D() > 0 && c.Audit.CheckpointInterval.D() < DefaultCheckpointInterval,
		"audit.checkpoint_interval must be set below the default")
	check(c.Recording.Retention.D() >= 6*365*24*time.Hour, "recording.retention must be at least 6y")
	for i, tg := range c.Targets {
		if tg.Kind == "postgres" {
			check(tg.Postgres.TLS == "verify-full" && tg.Postgres.CACert != "",
				"targets["+tg.Name+"].postgres: tls must be verify-full with ca_cert")
		}
		for _, r := range c.Targets[i].Roles {
			check(r.Policy.RequireReason, "targets["+tg.Name+"].roles["+r.Name+"]: require_reason must be on")
		}
	}
	for _, u := range c.Users {
		check(!u.Password.IsSet() && u.PasswordHash.IsSet(), "users["+u.Name+"]: password_hash, never a plaintext password")
	}
	found := secrets(reflect.ValueOf(*c), "")
	check(found[".Vault.SecretID"] != "" && found[".Users[0].TOTPSecret"] != "", "the secret walk must reach nested and listed fields")
	for path, s := range found {
		check(strings.HasPrefix(string(s), "env:"), path+": a secret must be an env: reference, not "+s.String())
	}
}

// secrets returns every set Secret in v by its Go field path.
func secrets(v reflect.Value, path string) map[string]Secret {
	out := map[string]Secret{}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			return secrets(v.Elem(), path)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			for k, s := range secrets(v.Field(i), path+"."+v.Type().Field(i).Name) {
				out[k] = s
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			for k, s := range secrets(v.Index(i), path+"["+strconv.Itoa(i)+"]") {
				out[k] = s
			}
		}
	case reflect.String:
		if s, ok := v.Interface().(Secret); ok && s.IsSet() {
			out[path] = s
		}
	}
	return out
}
