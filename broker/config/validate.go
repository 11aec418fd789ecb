package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Problem is one validation finding, located by its YAML path.
type Problem struct {
	Path    string
	Message string
}

func (p Problem) Error() string { return p.Path + ": " + p.Message }

// ValidationError lists every problem Validate found.
type ValidationError struct{ Problems []Problem }

func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Error()
	}
	return "invalid config:\n  " + strings.Join(lines, "\n  ")
}

type checker struct{ problems []Problem }

func (c *checker) add(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Validate reports every problem in the config, each with its YAML path
// (e.g. "targets[2].roles[0].policy.max_duration: must be > 0"). It expects
// ApplyDefaults to have run.
func (c *Config) Validate() error {
	var ck checker
	c.validateListen(&ck)
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			ck.add("store.path", "required for the sqlite store")
		}
	case "postgres":
		if !c.Store.DSN.IsSet() {
			ck.add("store.dsn", "required for the postgres store")
		}
	default:
		ck.add("store.driver", "must be sqlite or postgres, not %q", c.Store.Driver)
	}
	c.validateRecording(&ck)
	c.validateAudit(&ck)
	c.validateBackup(&ck)
	c.Notify.validate(&ck)
	c.validateOIDC(&ck)
	c.validateIndicators(&ck)
	c.validateSignatures(&ck)
	c.validateSCIM(&ck)
	c.validateWebAuthn(&ck)
	if c.Slack.Enabled {
		if !c.Slack.BotToken.IsSet() {
			ck.add("slack.bot_token", "required when slack is enabled")
		}
		if !c.Slack.SigningSecret.IsSet() && !c.Slack.AppToken.IsSet() {
			ck.add("slack.signing_secret", "a signing_secret or an app_token is required when slack is enabled")
		}
	}
	if d := c.Auth.SSHCertTTL.D(); d <= 0 || d > MaxSSHCertTTL {
		ck.add("auth.ssh_cert_ttl", "must be > 0 and at most %s: a certificate stays valid after its token is revoked", MaxSSHCertTTL)
	}
	if c.Vault.RoleID.IsSet() != c.Vault.SecretID.IsSet() {
		ck.add("vault.secret_id", "role_id and secret_id go together")
	}
	users, groups := c.validateIdentities(&ck)
	for _, g := range c.SecurityAdmins {
		if !groups[g] {
			ck.add("security_admins", "unknown group %q", g)
		}
	}
	names := map[string]bool{}
	for i := range c.Targets {
		c.validateTarget(&ck, fmt.Sprintf("targets[%d]", i), &c.Targets[i], names, users, groups)
	}
	c.validateBreakGlass(&ck, users, groups)
	c.validateReviews(&ck, users, groups)
	c.validateDataDictionary(&ck)
	if len(ck.problems) > 0 {
		return &ValidationError{Problems: ck.problems}
	}
	return nil
}

func (c *Config) validateListen(ck *checker) {
	for path, addr := range map[string]string{"listen.http": c.Listen.HTTP, "listen.ssh": c.Listen.SSH, "listen.postgres": c.Listen.Postgres} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			ck.add(path, "must be host:port: %v", err)
		}
	}
	if (c.Listen.TLSCert == "") != (c.Listen.TLSKey == "") {
		ck.add("listen.tls_key", "tls_cert and tls_key go together")
	}
	if err := c.Listen.CheckPlaintext(); err != nil {
		ck.add("listen.http", "%v", err)
	}
	if d := c.Listen.SessionSweep.D(); d < time.Second || d > 5*time.Minute {
		ck.add("listen.session_sweep", "must be between 1s and 5m")
	}
	c.Listen.validateProxies(ck)
	if u, err := url.Parse(c.Listen.AdvertiseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		ck.add("listen.advertise_url", "must be an http or https URL with a host and no path, such as https://custos-a.internal:8443")
	}
}

// CheckPlaintext refuses plain HTTP on an address other than loopback
// unless InsecureHTTP says so. Only literal loopback addresses and
// "localhost" count as loopback; an empty host listens everywhere.
func (l Listen) CheckPlaintext() error {
	if l.HTTP == "" || l.TLSCert != "" || l.InsecureHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(l.HTTP)
	if err != nil || IsLoopbackHost(host) {
		return nil // a malformed address is reported on its own
	}
	return fmt.Errorf("%s is not a loopback address and no listen.tls_cert is set: "+
		"set listen.tls_cert and listen.tls_key, or listen.insecure_http: true when a TLS-terminating proxy fronts the broker", l.HTTP)
}

// IsLoopbackHost reports whether host (as in host:port) is "localhost" or
// a loopback IP address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateRecording(ck *checker) {
	r := c.Recording
	switch r.Store {
	case "local":
	case "s3":
		if r.S3.Endpoint == "" {
			ck.add("recording.s3.endpoint", "required for the s3 store")
		}
		if r.S3.Bucket == "" {
			ck.add("recording.s3.bucket", "required for the s3 store")
		}
		if !r.S3.AccessKey.IsSet() || !r.S3.SecretKey.IsSet() {
			ck.add("recording.s3.access_key", "access_key and secret_key are required for the s3 store")
		}
	default:
		ck.add("recording.store", "must be local or s3, not %q", r.Store)
	}
	switch r.Encryption {
	case "local":
	case "vault":
		if c.Vault.Address == "" {
			ck.add("recording.encryption", "vault encryption needs vault.address")
		}
	default:
		ck.add("recording.encryption", "must be vault or local, not %q", r.Encryption)
	}
	if r.Retention <= 0 {
		ck.add("recording.retention", "must be > 0")
	}
	if r.SpoolMaxBytes < 0 {
		ck.add("recording.spool_max_bytes", "must be >= 0 (0: no cap)")
	}
}

func (c *Config) validateIdentities(ck *checker) (users, groups map[string]bool) {
	users, groups = map[string]bool{}, map[string]bool{}
	for i, u := range c.Users {
		p := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			ck.add(p+".name", "required")
		} else if users[u.Name] {
			ck.add(p+".name", "duplicate user %q", u.Name)
		}
		users[u.Name] = true
		if u.PasswordHash.IsSet() && u.Password.IsSet() {
			ck.add(p+".password", "give password_hash or password, not both")
		}
	}
	for i, g := range c.Groups {
		p := fmt.Sprintf("groups[%d]", i)
		if g.Name == "" {
			ck.add(p+".name", "required")
		} else if groups[g.Name] || users[g.Name] {
			ck.add(p+".name", "duplicate name %q (group names and user names share one namespace)", g.Name)
		}
		groups[g.Name] = true
		for j, m := range g.Members {
			if !users[m] {
				ck.add(fmt.Sprintf("%s.members[%d]", p, j), "unknown user %q", m)
			}
		}
	}
	return users, groups
}

func (c *Config) validateTarget(ck *checker, p string, t *Target, names, users, groups map[string]bool) {
	if t.Name == "" {
		ck.add(p+".name", "required")
	} else if strings.ContainsAny(t.Name, "@/ \t") {
		ck.add(p+".name", "must not contain '@', '/' or spaces")
	} else if names[t.Name] {
		ck.add(p+".name", "duplicate target %q", t.Name)
	}
	names[t.Name] = true
	switch t.Kind {
	case "ssh":
		if len(t.SSH.HostKeys) == 0 && t.SSH.HostCA == "" {
			ck.add(p+".ssh.host_keys", "pin the target's host keys or name a host_ca: unknown host keys are refused")
		}
	case "postgres":
		switch t.Postgres.TLS {
		case "verify-full", "verify-ca":
		case "prefer", "require", "disable":
			if t.Postgres.CACert != "" {
				ck.add(p+".postgres.ca_cert", "only used with tls: verify-full or verify-ca (tls is %q)", t.Postgres.TLS)
			}
			if t.Postgres.TLSServerName != "" {
				ck.add(p+".postgres.tls_server_name", "only used with tls: verify-full or verify-ca (tls is %q)", t.Postgres.TLS)
			}
		default:
			ck.add(p+".postgres.tls", "must be verify-full, verify-ca, require, prefer or disable")
		}
		switch t.Postgres.Parameters {
		case "record", "hash", "omit":
		default:
			ck.add(p+".postgres.parameters", "must be record, hash or omit")
		}
		if n := t.Postgres.MaxStatementBytes; n < 1 || n > MaxStatementBytes {
			ck.add(p+".postgres.max_statement_bytes", "must be between 1 and %d, what a recording holds in one field", MaxStatementBytes)
		}
	default:
		ck.add(p+".kind", "must be ssh or postgres, not %q", t.Kind)
	}
	switch t.Recording.IndexSQL {
	case "", "normalized", "full", "none":
	default:
		ck.add(p+".recording.index_sql", "must be normalized, full or none")
	}
	switch t.Recording.FileContents {
	case "", FileContentsFull, FileContentsDigest:
		if t.Recording.FileContents == FileContentsDigest && t.Kind != "ssh" {
			ck.add(p+".recording.file_contents", "applies to ssh targets only")
		}
	default:
		ck.add(p+".recording.file_contents", "must be full or digest")
	}
	if _, _, err := net.SplitHostPort(t.Address); err != nil {
		ck.add(p+".address", "must be host:port")
	}
	if len(t.Roles) == 0 {
		ck.add(p+".roles", "at least one role is required")
	}
	roles := map[string]bool{}
	for j := range t.Roles {
		r := &t.Roles[j]
		rp := fmt.Sprintf("%s.roles[%d]", p, j)
		if r.Name == "" {
			ck.add(rp+".name", "required")
		} else if roles[r.Name] {
			ck.add(rp+".name", "duplicate role %q", r.Name)
		}
		roles[r.Name] = true
		validatePolicy(ck, rp+".policy", r.Policy, users, groups)
		validateGuardrails(ck, rp+".guardrails", t.Kind, r.Guardrails)
	}
}

func validatePolicy(ck *checker, p string, pol Policy, users, groups map[string]bool) {
	known := func(field string, list []string) {
		for i, n := range list {
			if !users[n] && !groups[n] {
				ck.add(fmt.Sprintf("%s.%s[%d]", p, field, i), "unknown user or group %q", n)
			}
		}
	}
	known("requesters", pol.Requesters)
	known("approvers", pol.Approvers)
	if len(pol.Approvers) == 0 {
		ck.add(p+".approvers", "at least one approver group is required")
	}
	if pol.Approvals < 1 {
		ck.add(p+".approvals", "must be >= 1")
	}
	if pol.MaxDuration <= 0 {
		ck.add(p+".max_duration", "must be > 0")
	}
	if pol.RequestTTL <= 0 {
		ck.add(p+".request_ttl", "must be > 0")
	}
	if pol.Signature != "" && pol.Signature != SignatureRequired {
		ck.add(p+".signature", "must be empty or %q", SignatureRequired)
	}
	if !ValidStepUp(pol.StepUp) {
		ck.add(p+".step_up", "must be passkey, totp or any, not %q", pol.StepUp)
	}
	if pol.TicketPattern != "" {
		if _, err := regexp.Compile(pol.TicketPattern); err != nil {
			ck.add(p+".ticket_pattern", "invalid regular expression: %v", err)
		}
	}
	if w := pol.Window; w != nil {
		if _, err := time.LoadLocation(w.TZ); err != nil {
			ck.add(p+".window.tz", "unknown time zone %q", w.TZ)
		}
		for i, d := range w.Days {
			if _, ok := ParseWeekday(d); !ok {
				ck.add(fmt.Sprintf("%s.window.days[%d]", p, i), "must be mon..sun, not %q", d)
			}
		}
		for field, v := range map[string]string{"start": w.Start, "end": w.End} {
			if v == "" {
				continue
			}
			if _, err := ParseClock(v); err != nil {
				ck.add(p+".window."+field, "%v", err)
			}
		}
	}
}

// ParseWeekday parses mon..sun (or full English names), case-insensitively.
func ParseWeekday(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		name := strings.ToLower(d.String())
		if s == name || s == name[:3] {
			return d, true
		}
	}
	return 0, false
}

// ParseClock parses HH:MM (00:00–24:00) into minutes after midnight.
func ParseClock(s string) (int, error) {
	var h, m int
	if _, err := fmt.Sscanf(s, "%d:%d", &h, &m); err != nil || len(s) != 5 {
		return 0, errors.New("must be HH:MM")
	}
	if h < 0 || m < 0 || m > 59 || h > 24 || (h == 24 && m != 0) {
		return 0, errors.New("must be between 00:00 and 24:00")
	}
	return h*60 + m, nil
}
