package review

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/esign"
)

// signer runs the electronic-signature ceremony (re-authentication by
// password and TOTP or a passkey, and a meaning from
// signatures.meanings.review); *esign.Signer implements it.
type signer interface {
	Sign(ctx context.Context, user string, rec esign.Record, in *esign.Input) (broker.Signature, error)
}

// attestRecord is what a review's attestation signs: the review's ID,
// name, snapshot, predecessor, and its lines with their marks, so a mark
// made while the signer re-authenticated makes the signature not match.
func attestRecord(r Review) (esign.Record, error) {
	b, err := json.Marshal(r.Lines)
	if err != nil {
		return esign.Record{}, fmt.Errorf("review: sign: %w", err)
	}
	sum := sha256.Sum256(b)
	return esign.Record{Action: config.SignReview, ObjectID: r.ID, Fields: []esign.Field{
		{Name: "name", Value: r.Name}, {Name: "snapshot_hash", Value: r.SnapshotHash}, {Name: "prev_hash", Value: r.PrevHash},
		{Name: "lines", Value: "sha256:" + hex.EncodeToString(sum[:])},
	}}, nil
}

// stored is sig as a review keeps it.
func stored(sig broker.Signature) Signature {
	return Signature{PrintedName: sig.PrintedName, Time: sig.SignedAt.UTC(), Meaning: sig.Meaning, Method: sig.Method,
		Signer: sig.Signer, RecordHash: sig.RecordHash}
}
