package config

import (
	"net"
	"os"
	"path/filepath"
	"time"
)

// ApplyDefaults fills zero fields with their documented defaults.
func (c *Config) ApplyDefaults() {
	if c.Listen.HTTP == "" {
		c.Listen.HTTP = "127.0.0.1:8080"
	}
	if c.Listen.DataDir == "" {
		c.Listen.DataDir = "custos-data"
	}
	if c.PublicURL == "" {
		scheme := "http://"
		if c.Listen.TLSCert != "" {
			scheme = "https://"
		}
		c.PublicURL = scheme + c.Listen.HTTP
	}
	if c.Store.Driver == "" {
		c.Store.Driver = "sqlite"
	}
	if c.Store.Driver == "sqlite" && c.Store.Path == "" {
		c.Store.Path = filepath.Join(c.Listen.DataDir, "custos.db")
	}
	setDur(&c.Listen.SessionSweep, DefaultSessionSweep)
	if c.Listen.AdvertiseURL == "" {
		c.Listen.AdvertiseURL = c.Listen.defaultAdvertiseURL()
	}
	setDur(&c.Auth.TokenTTL, 8*time.Hour)
	setDur(&c.Auth.WebSessionTTL, 8*time.Hour)
	setDur(&c.Auth.DBTokenTTL, 15*time.Minute)
	setDur(&c.Auth.SSHCertTTL, 5*time.Minute)
	setDur(&c.Auth.FailureWindow, 15*time.Minute)
	if c.Auth.MaxFailures == 0 {
		c.Auth.MaxFailures = 5
	}
	v := &c.Vault
	setStr(&v.AppRoleMount, "approle")
	setStr(&v.DatabaseMount, "database")
	setStr(&v.SSHMount, "ssh")
	setStr(&v.TransitMount, "transit")
	setStr(&v.KVMount, "secret")
	setDur(&v.Timeout, 5*time.Second)
	r := &c.Recording
	setStr(&r.Store, "local")
	setStr(&r.Dir, filepath.Join(c.Listen.DataDir, "recordings"))
	setStr(&r.SpoolDir, filepath.Join(c.Listen.DataDir, "spool"))
	setStr(&r.SigningKey, filepath.Join(c.Listen.DataDir, "recording-signing.key"))
	setStr(&r.RetiredSigningKeys, filepath.Join(c.Listen.DataDir, "retired-signing-keys"))
	setStr(&r.LocalKey, filepath.Join(c.Listen.DataDir, "recording-wrap.key"))
	setStr(&r.TransitKey, "custos-recordings")
	if r.Encryption == "" {
		r.Encryption = "local"
		if v.Address != "" {
			r.Encryption = "vault"
		}
	}
	setDur(&r.Retention, 52584*time.Hour)
	setDur(&r.MaxUploadOutage, 5*time.Minute)
	setDur(&c.Audit.CheckpointInterval, DefaultCheckpointInterval)
	setStr(&c.Slack.SecurityChannel, c.Slack.Channel)
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Kind == "postgres" {
			setStr(&t.Postgres.Database, "postgres")
			setStr(&t.Postgres.TLS, "prefer")
			setStr(&t.Postgres.Parameters, "record")
			if t.Postgres.MaxStatementBytes == 0 {
				t.Postgres.MaxStatementBytes = MaxStatementBytes
			}
		}
		for j := range t.Roles {
			p := &t.Roles[j].Policy
			if p.Approvals == 0 {
				p.Approvals = 1
			}
			setDur(&p.MaxDuration, 8*time.Hour)
			setDur(&p.RequestTTL, 30*time.Minute)
			setDur(&p.HoldTimeout, 5*time.Minute)
		}
	}
	c.applyBreakGlassDefaults()
	c.applyReviewDefaults()
}

func setStr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDur(d *Duration, def time.Duration) {
	if *d == 0 {
		*d = Duration(def)
	}
}

// defaultAdvertiseURL is listen.advertise_url's default: the http
// listener's address, with the host name for an empty or unspecified
// host.
func (l Listen) defaultAdvertiseURL() string {
	scheme := "http://"
	if l.TLSCert != "" {
		scheme = "https://"
	}
	host, port, err := net.SplitHostPort(l.HTTP)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if host, err = os.Hostname(); err != nil {
			host = "localhost"
		}
	}
	return scheme + net.JoinHostPort(host, port)
}
