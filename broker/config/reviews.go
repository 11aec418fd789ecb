package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultReviewEvery is reviews.every's default: quarterly.
const DefaultReviewEvery = 2160 * time.Hour

// Reviews configures periodic access reviews (custos review).
type Reviews struct {
	// Reviewers are the users and groups who may start a review, attest
	// or flag its lines and sign it. Default: the security_admins groups.
	Reviewers []string `yaml:"reviewers"`
	// Every is how often a review must be attested; a longer time since
	// the last attested review makes reviews overdue. Default: 2160h
	// (quarterly).
	Every Duration `yaml:"every"`
	// Meanings is a deprecated alias of signatures.meanings.review, kept
	// so configs that set it still load: when signatures.meanings.review
	// is not set it takes this list. Default: empty (the meanings are
	// signatures.meanings.review, or DefaultMeanings[SignReview]).
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
	if len(c.Reviews.Meanings) > 0 && len(c.Signatures.Meanings[SignReview]) == 0 {
		if c.Signatures.Meanings == nil {
			c.Signatures.Meanings = map[string][]string{}
		}
		c.Signatures.Meanings[SignReview] = append([]string(nil), c.Reviews.Meanings...)
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
	if len(c.Reviews.Meanings) > 0 && !slices.Equal(c.Reviews.Meanings, c.Signatures.Meanings[SignReview]) {
		ck.add("reviews.meanings", "is a deprecated alias of signatures.meanings.review and differs from it: set only signatures.meanings.review")
	}
}
