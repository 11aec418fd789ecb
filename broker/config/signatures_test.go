package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSignaturesConfig(t *testing.T) {
	good := strings.Replace(minimal, "approvers: [approvers]", "approvers: [approvers]\n          signature: required", 1) + `
signatures:
  meanings:
    approve: ["approved for production change", "approved for investigation only"]
  unseal: required
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Targets[0].Roles[0].Policy.SignatureRequiredFor() || !c.Signatures.UnsealRequired() {
		t.Fatal("signature: required not read")
	}
	if got := c.Signatures.MeaningsFor(SignApprove); !slices.Equal(got, []string{"approved for production change", "approved for investigation only"}) {
		t.Errorf("approve meanings %q", got)
	}
	if got := c.Signatures.MeaningsFor(SignReview); !slices.Equal(got, DefaultMeanings[SignReview]) {
		t.Errorf("review meanings default %q", got)
	}

	for name, tc := range map[string]struct{ yaml, path string }{
		"policy value":   {strings.Replace(minimal, "approvers: [approvers]", "approvers: [approvers]\n          signature: yes-please", 1), "targets[0].roles[0].policy.signature"},
		"unknown action": {minimal + "signatures: {meanings: {approve_all: [x]}}\n", "signatures.meanings.approve_all"},
		"empty meaning":  {minimal + "signatures: {meanings: {deny: [\" \"]}}\n", "signatures.meanings.deny[0]"},
		"unseal value":   {minimal + "signatures: {unseal: maybe}\n", "signatures.unseal"},
	} {
		_, err := Parse([]byte(tc.yaml))
		var ve *ValidationError
		if !errors.As(err, &ve) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v, want a problem at %s", name, err, tc.path)
		}
	}
}
