package esign_test

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

type checker struct{}

func (checker) Reauthenticate(_ context.Context, _, _, _, _ string) (string, error) {
	return esign.MethodPasswordTOTP, nil
}

type names struct{}

func (names) PrintedName(string) string { return "Sam Auditor" }

// An access review attests with the same ceremony as an approval: the
// review's ID and the fields that make it what it is form the record, and
// the signature is stored with the review and its audit record.
func ExampleSigner_Sign_review() {
	s := esign.New(esign.Options{Config: config.NewLive(&config.Config{}), Reauth: checker{}, Names: names{},
		Now: func() time.Time { return time.Date(2026, 12, 31, 9, 0, 0, 0, time.UTC) }})
	rec := esign.Record{Action: config.SignReview, ObjectID: "rev_2026q4", Fields: []esign.Field{
		{Name: "scope", Value: "prod-db"}, {Name: "period", Value: "2026Q4"}, {Name: "grants", Value: "42"}}}
	sig, err := s.Sign(context.Background(), "sam", rec, &esign.Input{Meaning: "reviewed, no concerns", Password: "…", TOTP: "…"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sig.PrintedName, sig.SignedAt.Format(time.RFC3339), sig.Meaning, sig.Method, esign.Check(sig, rec) == nil)
	// Output: Sam Auditor 2026-12-31T09:00:00Z reviewed, no concerns password+totp true
}
