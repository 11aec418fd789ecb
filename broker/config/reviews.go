package config

import (
	"fmt"
	"strings"
	"time"
)

// DefaultReviewEvery is reviews.every's default: quarterly.
const DefaultReviewEvery = 2160 * time.Hour

// DefaultReviewMeanings are reviews.meanings' default.
var DefaultReviewMeanings = []string{"reviewed, no concerns", "reviewed, concerns raised"}

// Reviews configures periodic access reviews (custos review).
type Reviews struct {
	// Reviewers are the users and groups who may start a review, attest
	// or flag its lines and sign it. Default: the security_admins groups.
	Reviewers []string `yaml:"reviewers"`
	// Every is how often a review must be attested; a longer time since
	// the last attested review makes reviews overdue. Default: 2160h
	// (quarterly).
	Every Duration `yaml:"every"`
	// Meanings are the meanings a reviewer may sign an attestation with.
	// Default: "reviewed, no concerns" and "reviewed, concerns raised".
	Meanings []string `yaml:"meanings"`
}

// ReviewersOrDefault are the reviewers: reviews.reviewers, or the
// security_admins groups when none are named.
func (c *Config) ReviewersOrDefault() []string {
	if len(c.Reviews.Reviewers) > 0 {
		return c.Reviews.Reviewers
	}
	return c.SecurityAdmins
}

func (c *Config) applyReviewDefaults() {
	setDur(&c.Reviews.Every, DefaultReviewEvery)
	if len(c.Reviews.Meanings) == 0 {
		c.Reviews.Meanings = append([]string(nil), DefaultReviewMeanings...)
	}
}

func (c *Config) validateReviews(ck *checker, users, groups map[string]bool) {
	for i, r := range c.Reviews.Reviewers {
		if !users[r] && !groups[r] {
			ck.add(fmt.Sprintf("reviews.reviewers[%d]", i), "unknown user or group %q", r)
		}
	}
	if c.Reviews.Every.D() < 0 {
		ck.add("reviews.every", "must not be negative")
	}
	for i, m := range c.Reviews.Meanings {
		if strings.TrimSpace(m) == "" {
			ck.add(fmt.Sprintf("reviews.meanings[%d]", i), "must not be empty")
		}
	}
}
