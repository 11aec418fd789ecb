package config

import "time"

// Audit configures the audit log's checkpoints.
type Audit struct {
	// CheckpointInterval is how often the broker writes a signed
	// checkpoint of the audit chain's head into the recordings object
	// store (besides at start, at shutdown and whenever a recording is
	// sealed). Between two checkpoints the chain is protected only by its
	// hashes. Default: 5m; at least 1s.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// DefaultCheckpointInterval is audit.checkpoint_interval's default.
const DefaultCheckpointInterval = 5 * time.Minute

func (c *Config) validateAudit(ck *checker) {
	if c.Audit.CheckpointInterval.D() < time.Second {
		ck.add("audit.checkpoint_interval", "must be at least 1s")
	}
}
