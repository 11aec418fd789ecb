package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterReviewOverdue registers custos_review_overdue on reg: 1 while an
// access review is overdue (none attested yet, or the last attested
// longer than reviews.every ago), else 0. overdue is asked at each
// scrape; an error it returns leaves the gauge at 1, erring on the side
// of the alert.
func RegisterReviewOverdue(reg prometheus.Registerer, overdue func() (bool, error)) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custos_review_overdue",
		Help: "1 while an access review is overdue (reviews.every since the last attested review), else 0."},
		func() float64 {
			if o, err := overdue(); err != nil || o {
				return 1
			}
			return 0
		})
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("metrics: custos_review_overdue: %w", err)
	}
	return nil
}
