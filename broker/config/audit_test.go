package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditCheckpointInterval(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.CheckpointInterval.D() != 5*time.Minute {
		t.Errorf("default checkpoint interval = %v, want 5m", c.Audit.CheckpointInterval.D())
	}
	c, err = Parse([]byte(minimal + "audit: {checkpoint_interval: 90s}\n"))
	if err != nil || c.Audit.CheckpointInterval.D() != 90*time.Second {
		t.Fatalf("checkpoint_interval 90s: %v, %v", c, err)
	}
	_, err = Parse([]byte(minimal + "audit: {checkpoint_interval: 500ms}\n"))
	if err == nil || !strings.Contains(err.Error(), "audit.checkpoint_interval: must be at least 1s") {
		t.Fatalf("checkpoint_interval 500ms: %v", err)
	}
}

func TestAuditStream(t *testing.T) {
	c, err := Parse([]byte(minimal + `audit:
  stream:
    webhook: {url: "https://siem.example/hook", secret: "env:HOOK_SECRET", timeout: 5s}
    syslog: {address: "siem.example:6514", ca_cert: /etc/ca.pem}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Stream.Webhook.URL != "https://siem.example/hook" || c.Audit.Stream.Webhook.Secret != "env:HOOK_SECRET" ||
		c.Audit.Stream.Syslog.Address != "siem.example:6514" {
		t.Fatalf("stream = %+v", c.Audit.Stream)
	}
	for _, tc := range []struct{ yaml, want string }{
		{`{webhook: {secret: s}}`, "audit.stream.webhook.url: is required"},
		{`{webhook: {url: "http://siem.example/hook", secret: s}}`, "audit.stream.webhook.url: must be https unless the host is loopback"},
		{`{webhook: {url: "https://u:p@siem.example/hook", secret: s}}`, "audit.stream.webhook.url: must not carry credentials"},
		{`{webhook: {url: "siem.example/hook", secret: s}}`, "audit.stream.webhook.url: must be an absolute http(s) URL"},
		{`{webhook: {url: "https://siem.example/hook"}}`, "audit.stream.webhook.secret: is required"},
		{`{syslog: {address: "siem.example"}}`, "audit.stream.syslog.address: must be host:port"},
	} {
		_, err := Parse([]byte(minimal + "audit: {stream: " + tc.yaml + "}\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := Parse([]byte(minimal + `audit: {stream: {webhook: {url: "http://127.0.0.1:9/hook", secret: s}}}` + "\n")); err != nil {
		t.Errorf("loopback http webhook: %v", err)
	}
}
