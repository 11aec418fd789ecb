package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The chain lives in the state store, so whoever can write the store can
// edit a record and recompute every hash after it: the rewritten chain
// verifies. Checkpoints close that gap. A broker regularly writes the
// chain's head, and a short digest of every record since its previous
// checkpoint, signed with its Ed25519 key, into the write-once recordings
// bucket; Verifier compares the store's chain with every checkpoint and
// names the first record that disagrees.

// Checkpoint file identification.
const (
	CheckpointFormat  = "custos-audit-checkpoint"
	CheckpointVersion = 1
)

// CheckpointDir is the folder of the object store, under its key prefix,
// that holds checkpoint files.
const CheckpointDir = "audit/checkpoints/"

// checkpointContext is prefixed to the signed bytes, so a checkpoint
// signature never verifies as a manifest signature or the reverse.
const checkpointContext = "custos audit checkpoint v1\n"

// DigestLen is how many leading hex digits of each record's hash a
// checkpoint lists: 64 bits, enough that no edit of a record can be made
// to match by chance or by search.
const DigestLen = 16

// MaxCheckpointRecords bounds the digests one checkpoint lists (about
// 380 KB); a broker further behind writes several checkpoints.
const MaxCheckpointRecords = 20000

// ErrCheckpointSignature is wrapped by every checkpoint signature failure.
var ErrCheckpointSignature = errors.New("checkpoint signature invalid")

// Checkpoint is a signed statement of the audit chain as one broker read
// it from the store: the head record's seq and hash, and the digests of
// the records after FromSeq up to it.
type Checkpoint struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Seq and Hash are the chain head: the newest record's seq and hash.
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
	// RecordTime is the head record's time.
	RecordTime time.Time `json:"record_time"`
	// Time is when the checkpoint was taken, by the writing broker's clock.
	Time time.Time `json:"time"`
	// Replica names the broker process that wrote it.
	Replica string `json:"replica"`
	// Reason is why it was written: start, interval, recording sealed,
	// shutdown.
	Reason string `json:"reason"`
	// FromSeq is the seq after which Digests start: Digests[i] is the
	// first DigestLen hex digits of record FromSeq+1+i's hash, up to Seq.
	FromSeq int64    `json:"from_seq"`
	Digests []string `json:"digests"`
}

// Signer signs checkpoints: the broker's manifest signing key
// (*manifest.Signer in the recorder).
type Signer interface {
	Public() ed25519.PublicKey
	Sign(message []byte) []byte
}

// CheckpointStore keeps checkpoint files where the state store's owner
// cannot rewrite them: the recordings object store, under Object Lock.
type CheckpointStore interface {
	// PutCheckpoint writes a new object called name under CheckpointDir.
	// Names are unique; an object is never replaced.
	PutCheckpoint(ctx context.Context, name string, body []byte) error
	// ListCheckpoints lists every stored version of every checkpoint
	// object, delete markers included.
	ListCheckpoints(ctx context.Context) ([]CheckpointObject, error)
	// ReadCheckpoint reads one listed version.
	ReadCheckpoint(ctx context.Context, o CheckpointObject) (CheckpointData, error)
}

// CheckpointObject is one listed version of a checkpoint object.
type CheckpointObject struct {
	// Name is the object name under CheckpointDir.
	Name      string
	VersionID string
	// Deleted marks a delete marker: someone deleted the object. Under
	// Object Lock the version below it stays readable.
	Deleted bool
}

// CheckpointData is a read checkpoint object.
type CheckpointData struct {
	Body []byte
	// ObjectLock is true when the store enforces retention; RetentionMode
	// and RetainUntil then say how this object is held.
	ObjectLock    bool
	RetentionMode string
	RetainUntil   time.Time
}

// checkpointFile is the layout of a checkpoint object.
type checkpointFile struct {
	Checkpoint json.RawMessage `json:"checkpoint"`
	Signature  signature       `json:"signature"`
}

// signature is a detached Ed25519 signature, laid out as a manifest's.
type signature struct {
	Alg   string `json:"alg"`
	KeyID string `json:"key_id"`
	// PublicKey is informational: verifiers use their trusted keys.
	PublicKey string `json:"public_key"`
	Value     string `json:"value"`
}

// KeyID returns "ed25519:" and the first 16 hex digits of the SHA-256 of
// the public key, the fingerprint manifests use too.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:8])
}

// SignCheckpoint encodes c and signs it, returning the file's bytes.
func SignCheckpoint(c Checkpoint, s Signer) ([]byte, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode: %w", err)
	}
	pub := s.Public()
	sig := s.Sign(append([]byte(checkpointContext), raw...))
	sb, err := json.Marshal(signature{
		Alg: "ed25519", KeyID: KeyID(pub), PublicKey: base64.StdEncoding.EncodeToString(pub),
		Value: base64.StdEncoding.EncodeToString(sig),
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode: %w", err)
	}
	// The outer object is written by hand so the signed member stays
	// byte-identical to what was signed.
	out := make([]byte, 0, len(raw)+len(sb)+32)
	out = append(out, `{"checkpoint":`...)
	out = append(out, raw...)
	out = append(out, `,"signature":`...)
	out = append(out, sb...)
	return append(out, "}\n"...), nil
}

// ParseCheckpoint decodes a checkpoint file, checks its signature against
// the trusted keys and its contents for consistency, and returns it with
// the key id that signed it. Signature failures wrap
// ErrCheckpointSignature.
func ParseCheckpoint(b []byte, trusted ...ed25519.PublicKey) (Checkpoint, string, error) {
	var f checkpointFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Checkpoint{}, "", fmt.Errorf("checkpoint: parse: %w", err)
	}
	if len(f.Checkpoint) == 0 {
		return Checkpoint{}, "", errors.New("checkpoint: parse: no checkpoint member")
	}
	if f.Signature.Alg != "ed25519" {
		return Checkpoint{}, "", fmt.Errorf("%w: algorithm %q", ErrCheckpointSignature, f.Signature.Alg)
	}
	sig, err := base64.StdEncoding.DecodeString(f.Signature.Value)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Checkpoint{}, "", fmt.Errorf("%w: malformed", ErrCheckpointSignature)
	}
	// The signature covers the exact bytes of the member, as written.
	msg := append([]byte(checkpointContext), f.Checkpoint...)
	keyID := ""
	for _, pub := range trusted {
		if ed25519.Verify(pub, msg, sig) {
			keyID = KeyID(pub)
			break
		}
	}
	if keyID == "" {
		return Checkpoint{}, "", fmt.Errorf("%w: no trusted key verifies it (it names key %s)", ErrCheckpointSignature, f.Signature.KeyID)
	}
	var c Checkpoint
	if err := json.Unmarshal(f.Checkpoint, &c); err != nil {
		return Checkpoint{}, keyID, fmt.Errorf("checkpoint: parse: %w", err)
	}
	if err := c.check(); err != nil {
		return Checkpoint{}, keyID, fmt.Errorf("checkpoint: %w", err)
	}
	return c, keyID, nil
}

// check refuses a checkpoint whose fields do not fit together.
func (c Checkpoint) check() error {
	switch {
	case c.Format != CheckpointFormat || c.Version != CheckpointVersion:
		return fmt.Errorf("unsupported format %q version %d", c.Format, c.Version)
	case c.Seq < 1 || c.FromSeq < 0 || c.FromSeq >= c.Seq:
		return fmt.Errorf("seq %d from %d out of range", c.Seq, c.FromSeq)
	case int64(len(c.Digests)) != c.Seq-c.FromSeq:
		return fmt.Errorf("%d digests for records %d to %d", len(c.Digests), c.FromSeq+1, c.Seq)
	case len(c.Hash) != 64 || !isHex(c.Hash):
		return errors.New("head hash malformed")
	case c.Digests[len(c.Digests)-1] != c.Hash[:DigestLen]:
		return errors.New("last digest is not the head hash's")
	}
	for _, d := range c.Digests {
		if len(d) != DigestLen || !isHex(d) {
			return fmt.Errorf("digest %q malformed", d)
		}
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// CheckpointName is the object name of c: the head seq (zero-padded, so
// names sort by it), the time taken and the replica, which keeps names of
// several brokers writing to one bucket apart.
func CheckpointName(c Checkpoint) string {
	return fmt.Sprintf("%020d-%s-%s.json", c.Seq, c.Time.UTC().Format("20060102T150405.000000000Z"), c.Replica)
}

// ValidCheckpointName reports whether name can be a checkpoint object name
// (no folders, only safe characters).
func ValidCheckpointName(name string) bool {
	if name == "" || len(name) > 200 || !strings.HasSuffix(name, ".json") || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
