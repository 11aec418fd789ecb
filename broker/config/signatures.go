package config

import (
	"fmt"
	"slices"
	"strings"
)

// Signature actions: what an electronic signature can mean to sign.
const (
	SignApprove = "approve"
	SignDeny    = "deny"
	SignUnseal  = "unseal"
	SignReview  = "review"
)

// SignatureRequired is the value of policy.signature (and
// signatures.unseal) that makes decisions electronic signatures.
const SignatureRequired = "required"

// DefaultMeanings are the meanings a signer may choose when
// signatures.meanings does not list an action.
var DefaultMeanings = map[string][]string{
	SignApprove: {"approved"},
	SignDeny:    {"denied"},
	SignUnseal:  {"emergency access confirmed"},
	SignReview:  {"reviewed, no concerns", "reviewed, concerns raised"},
}

// Signatures configures electronic signatures (docs/policy.md). Which
// approvals and denials are signatures is per role (policy.signature).
type Signatures struct {
	// Meanings lists, per action (approve, deny, unseal, review), the
	// meanings a signer chooses from; the first is the default the CLI
	// and web UI offer. Default: DefaultMeanings for each action not
	// listed.
	Meanings map[string][]string `yaml:"meanings"`
	// Unseal makes every break-glass unseal confirmation a signature
	// ("required"). Default: empty, a confirmation needs the custodian's
	// second factor but carries no meaning.
	Unseal string `yaml:"unseal"`
}

// MeaningsFor returns the meanings a signer of action may choose.
func (s Signatures) MeaningsFor(action string) []string {
	if m, ok := s.Meanings[action]; ok && len(m) > 0 {
		return slices.Clone(m)
	}
	return slices.Clone(DefaultMeanings[action])
}

// UnsealRequired reports whether unseal confirmations are signatures.
func (s Signatures) UnsealRequired() bool { return s.Unseal == SignatureRequired }

// SignatureRequiredFor reports whether a role's decisions are signatures.
func (p Policy) SignatureRequiredFor() bool { return p.Signature == SignatureRequired }

func (c *Config) validateSignatures(ck *checker) {
	for action, list := range c.Signatures.Meanings {
		if _, ok := DefaultMeanings[action]; !ok {
			ck.add("signatures.meanings."+action, "unknown action: use approve, deny, unseal or review")
		}
		for i, m := range list {
			if strings.TrimSpace(m) == "" || len(m) > 200 {
				ck.add(fmt.Sprintf("signatures.meanings.%s[%d]", action, i), "must be non-empty text of at most 200 bytes")
			}
		}
	}
	if v := c.Signatures.Unseal; v != "" && v != SignatureRequired {
		ck.add("signatures.unseal", "must be empty or %q", SignatureRequired)
	}
}
