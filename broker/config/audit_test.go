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
