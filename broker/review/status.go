package review

import (
	"context"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/config"
)

// Status returns the open review, the last attested one and whether a
// review is overdue: none was ever attested, or the last was attested
// longer than reviews.every ago.
func (s *Service) Status(ctx context.Context, actor string) (Status, error) {
	if err := s.may(access.ViewReview, actor); err != nil {
		return Status{}, err
	}
	return s.status(ctx)
}

func (s *Service) status(ctx context.Context) (Status, error) {
	cfg := s.o.Config.Load()
	st := Status{Every: cfg.Reviews.Every.D().String(), Reviewers: cfg.ReviewersOrDefault(), Meanings: cfg.Signatures.MeaningsFor(config.SignReview)}
	var idx []Summary
	err := s.o.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		idx, _, err = getJSON[[]Summary](tx, indexKey)
		return err
	})
	if err != nil {
		return Status{}, err
	}
	for i := range idx {
		if idx[i].State == StateOpen {
			st.Current = &idx[i]
		}
	}
	if last, ok := lastAttested(idx); ok {
		st.LastAttested = &last
		st.DueAt = last.AttestedAt.Add(cfg.Reviews.Every.D())
		st.Overdue = s.o.Now().After(st.DueAt)
	} else {
		st.Overdue = true
	}
	return st, nil
}

// Overdue reports whether a review is overdue, for the
// custos_review_overdue gauge.
func (s *Service) Overdue(ctx context.Context) (bool, error) {
	st, err := s.status(ctx)
	return st.Overdue, err
}

// Export is a review as custos review export writes it: the review and
// the chain of attested reviews up to it, each hash checked again.
type Export struct {
	Review Review `json:"review"`
	// Chain lists the attested reviews before this one, oldest first,
	// then this one.
	Chain []ChainLink `json:"chain"`
	// Verified says every snapshot and result hash of Chain was
	// recomputed and matched, and each links to the one before.
	Verified bool   `json:"verified"`
	Problem  string `json:"problem,omitempty"`
}

// ChainLink is one review of the chain.
type ChainLink struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	PrevHash     string `json:"prev_hash,omitempty"`
	SnapshotHash string `json:"snapshot_hash"`
	ResultHash   string `json:"result_hash,omitempty"`
}

// Export returns review id with its verified chain.
func (s *Service) Export(ctx context.Context, actor, id string) (Export, error) {
	if err := s.may(access.ViewReview, actor); err != nil {
		return Export{}, err
	}
	var out Export
	err := s.o.Store.View(ctx, func(tx broker.Tx) error {
		r, err := loadReview(tx, id)
		if err != nil {
			return err
		}
		out.Review = r
		chain := []Review{r}
		for cur := r; cur.Base != ""; {
			if cur, err = loadReview(tx, cur.Base); err != nil {
				return err
			}
			chain = append([]Review{cur}, chain...)
		}
		out.Verified, out.Problem = true, ""
		prev := ""
		for _, c := range chain {
			link := ChainLink{ID: c.ID, Name: c.Name, PrevHash: c.PrevHash, SnapshotHash: c.SnapshotHash}
			if c.Attestation != nil {
				link.ResultHash = c.Attestation.ResultHash
			}
			out.Chain = append(out.Chain, link)
			if p := verifyOne(c, prev); p != "" && out.Problem == "" {
				out.Verified, out.Problem = false, p
			}
			prev = c.SnapshotHash
		}
		return nil
	})
	return out, err
}

// verifyOne checks r's hashes given the snapshot hash of the review
// before it; it returns what is wrong, or "".
func verifyOne(r Review, prev string) string {
	if r.PrevHash != prev {
		return fmt.Sprintf("review %s: prev_hash does not match the snapshot hash of the review before it", r.ID)
	}
	if h, err := hashSnapshot(r.PrevHash, r.Snapshot); err != nil || h != r.SnapshotHash {
		return fmt.Sprintf("review %s: snapshot does not match its snapshot_hash", r.ID)
	}
	if a := r.Attestation; a != nil {
		if h, err := hashResult(r.SnapshotHash, r.Lines, a.Signature); err != nil || h != a.ResultHash {
			return fmt.Sprintf("review %s: lines, marks or signature do not match its result_hash", r.ID)
		}
	}
	return ""
}
