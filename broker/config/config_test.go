package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const minimal = `
users:
  - name: alice
  - name: bob
groups:
  - name: approvers
    members: [bob]
targets:
  - name: db
    kind: postgres
    address: 127.0.0.1:5432
    roles:
      - name: readonly
        policy:
          approvers: [approvers]
`

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Targets[0].Roles[0]
	if r.Policy.Approvals != 1 || r.Policy.MaxDuration.D() != 8*time.Hour || r.Policy.RequestTTL.D() != 30*time.Minute {
		t.Errorf("policy defaults not applied: %+v", r.Policy)
	}
	if !r.Policy.DenyEndsOrDefault() {
		t.Error("deny_ends should default to true")
	}
	if c.Store.Driver != "sqlite" || c.Listen.HTTP != "127.0.0.1:8080" || c.Auth.TokenTTL.D() != 8*time.Hour {
		t.Errorf("defaults not applied: %+v %+v", c.Store, c.Listen)
	}
	if c.Targets[0].Postgres.Parameters != "record" || c.Recording.Store != "local" || c.Recording.Encryption != "local" {
		t.Error("target or recording defaults not applied")
	}
}

func TestValidateReportsEveryProblemWithPath(t *testing.T) {
	bad := `
store: {driver: mysql}
users:
  - name: alice
  - name: alice
groups:
  - name: ops
    members: [nobody]
targets:
  - name: db
    kind: postgres
    address: nope
    recording: {index_sql: everything, file_contents: hashes}
    roles:
      - name: rw
        policy:
          approvers: [ghosts]
          max_duration: -1h
          ticket_pattern: "("
          window: {tz: Mars/Olympus, days: [funday], start: "25:00"}
  - name: web
    kind: ssh
    address: 127.0.0.1:22
    roles: [{name: ops, policy: {approvers: [ops]}}]
`
	_, err := Parse([]byte(bad))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want ValidationError, got %v", err)
	}
	want := []string{
		"store.driver: must be sqlite or postgres",
		"users[1].name: duplicate user",
		"groups[0].members[0]: unknown user",
		"targets[0].address: must be host:port",
		"targets[0].recording.index_sql: must be normalized, full or none",
		"targets[0].recording.file_contents: must be full or digest",
		"targets[0].roles[0].policy.approvers[0]: unknown user or group",
		"targets[0].roles[0].policy.max_duration: must be > 0",
		"targets[0].roles[0].policy.ticket_pattern: invalid regular expression",
		"targets[0].roles[0].policy.window.tz: unknown time zone",
		"targets[0].roles[0].policy.window.days[0]: must be mon..sun",
		"targets[0].roles[0].policy.window.start: must be between",
		"targets[1].ssh.host_keys: pin the target's host keys",
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
}

func TestUnknownFieldRejected(t *testing.T) {
	_, err := Parse([]byte("listen: {htp: ':80'}\n"))
	if err == nil || !strings.Contains(err.Error(), "htp") {
		t.Fatalf("want unknown field error, got %v", err)
	}
}

func TestSecretResolve(t *testing.T) {
	t.Setenv("CUSTOS_TEST_SECRET", "s3cret")
	dir := t.TempDir()
	f := filepath.Join(dir, "s")
	if err := os.WriteFile(f, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"env:CUSTOS_TEST_SECRET", "s3cret", false},
		{"file:" + f, "from-file", false},
		{"inline", "inline", false},
		{"env:CUSTOS_TEST_UNSET_XYZ", "", true},
		{"file:" + filepath.Join(dir, "missing"), "", true},
	} {
		got, err := Secret(tc.in).Resolve()
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error leaks the value: %v", err)
		}
	}
	if Secret("hunter2").String() == "hunter2" {
		t.Error("String must not print inline secrets")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "30d": 720 * time.Hour,
		"6y": time.Duration(6 * 365.25 * 24 * float64(time.Hour)), "120": 2 * time.Minute,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("soon"); err == nil {
		t.Error("want error for bad duration")
	}
}

func TestDevConfigIsValid(t *testing.T) {
	b, err := os.ReadFile("../../deploy/dev/custos.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// up.sh sets CUSTOS_STORE to one of these, by REPLICAS.
	for _, store := range []string{"{driver: sqlite, path: .dev/data/custos.db}", "{driver: postgres, dsn: env:CUSTOS_STORE_DSN}"} {
		s := os.Expand(string(b), func(k string) string {
			switch {
			case k == "CUSTOS_STORE":
				return store
			case strings.HasSuffix(k, "_PORT"):
				return "1234"
			case strings.HasSuffix(k, "_ENABLED"):
				return "true"
			}
			return "x"
		})
		if _, err := Parse([]byte(s)); err != nil {
			t.Fatalf("store %s: %v", store, err)
		}
	}
}

func TestFileContentsPolicy(t *testing.T) {
	ssh := func(v string) string {
		return minimal + `  - name: web
    kind: ssh
    address: 127.0.0.1:22
    ssh: {host_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFr8wyd0bHq3kPRWh2XnRr3sHxMC8XoQJAz+6tNHDmKe"]}
    recording: {file_contents: ` + v + `}
    roles: [{name: ops, policy: {approvers: [approvers]}}]
`
	}
	for _, v := range []string{`""`, "full", "digest"} {
		c, err := Parse([]byte(ssh(v)))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if got := c.Targets[1].Recording.FileContents; got != strings.Trim(v, `"`) {
			t.Errorf("%s: parsed %q", v, got)
		}
	}
	if _, err := Parse([]byte(ssh("metadata"))); err == nil || !strings.Contains(err.Error(), "targets[1].recording.file_contents: must be full or digest") {
		t.Errorf("bad value: %v", err)
	}
	pg := strings.Replace(minimal, "    address: 127.0.0.1:5432\n", "    address: 127.0.0.1:5432\n    recording: {file_contents: digest}\n", 1)
	if _, err := Parse([]byte(pg)); err == nil || !strings.Contains(err.Error(), "targets[0].recording.file_contents: applies to ssh targets only") {
		t.Errorf("digest on a postgres target: %v", err)
	}
}
