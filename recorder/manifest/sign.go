package manifest

import "crypto/ed25519"

// Sign signs message with the broker's key, for records other than
// manifests that the same key vouches for (audit checkpoints). Every
// message signed with this key starts with a context line of its own
// ("custos recording manifest v1\n", "custos audit checkpoint v1\n"), so a
// signature over one kind of record never verifies as another.
func (s *Signer) Sign(message []byte) []byte { return ed25519.Sign(s.key, message) }
