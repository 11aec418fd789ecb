package config

import (
	"slices"
	"strings"
	"testing"
)

func TestReviewsConfig(t *testing.T) {
	const base = `
users: [{name: rita}, {name: sam}]
groups: [{name: security, members: [sam]}, {name: auditors, members: [rita]}]
security_admins: [security]
`
	cases := []struct {
		name, yaml, problem string
		reviewers           []string
	}{
		{"defaults to the security admins", base, "", []string{"security"}},
		{"named group", base + "reviews: {reviewers: [auditors]}\n", "", []string{"auditors"}},
		{"named user", base + "reviews: {reviewers: [rita]}\n", "", []string{"rita"}},
		{"unknown reviewer", base + "reviews: {reviewers: [mallory]}\n", `reviews.reviewers[0]: unknown user or group "mallory"`, nil},
		{"empty meaning", base + "reviews: {meanings: [' ']}\n", "reviews.meanings[0]", nil},
		{"negative period", base + "reviews: {every: -1h}\n", "reviews.every", nil},
		{"deprecated alias differing from signatures.meanings.review", base + "reviews: {meanings: [ok]}\nsignatures: {meanings: {review: [fine]}}\n",
			"reviews.meanings: is a deprecated alias", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.yaml))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("got %v, want a problem %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ReviewersOrDefault(); !slices.Equal(got, tc.reviewers) {
				t.Errorf("reviewers %v, want %v", got, tc.reviewers)
			}
			if got := c.Signatures.MeaningsFor(SignReview); c.Reviews.Every.D() != DefaultReviewEvery || !slices.Equal(got, DefaultMeanings[SignReview]) {
				t.Errorf("defaults: every %s, meanings %q", c.Reviews.Every.D(), got)
			}
		})
	}
}

// TestReviewMeaningsAlias: a config that still sets reviews.meanings
// loads, and its list becomes the review signature's meanings.
func TestReviewMeaningsAlias(t *testing.T) {
	c, err := Parse([]byte(`
users: [{name: rita}]
security_admins: []
reviews: {meanings: ["checked", "checked, see ticket"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Signatures.MeaningsFor(SignReview); !slices.Equal(got, []string{"checked", "checked, see ticket"}) {
		t.Fatalf("review meanings %q", got)
	}
}
