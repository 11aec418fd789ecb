// Package passkeytest is a software WebAuthn authenticator for tests: it
// answers the broker's registration and step-up options the way a
// platform authenticator does (attestation "none", ES256), so tests of
// the server side run the real verification without a browser.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// Authenticator holds one credential. Origin and RPID are what the
// client and authenticator claim; tests change them to play a phishing
// site. UserVerified sets the UV flag.
type Authenticator struct {
	Origin       string
	RPID         string
	UserVerified bool
	key          *ecdsa.PrivateKey
	id           []byte
	count        uint32
}

// New returns an authenticator with a fresh key that verifies its user.
func New(origin, rpID string) *Authenticator {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Authenticator{Origin: origin, RPID: rpID, UserVerified: true, key: k, id: id}
}

// ID is the credential ID, base64url as the broker lists it.
func (a *Authenticator) ID() string { return b64(a.id) }

var b64 = base64.RawURLEncoding.EncodeToString

// challengeOf reads publicKey.challenge from options ({"publicKey":
// {...}}, optionally wrapped in {"options": ...}).
func challengeOf(options []byte) (string, error) {
	var o struct {
		Options   json.RawMessage `json:"options"`
		PublicKey struct {
			Challenge string `json:"challenge"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		return "", fmt.Errorf("passkeytest: options: %w", err)
	}
	if len(o.Options) > 0 {
		return challengeOf(o.Options)
	}
	if o.PublicKey.Challenge == "" {
		return "", fmt.Errorf("passkeytest: options without a challenge")
	}
	return o.PublicKey.Challenge, nil
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

func (a *Authenticator) authData(attested []byte) []byte {
	h := sha256.Sum256([]byte(a.RPID))
	flags := byte(0x01) // user present
	if a.UserVerified {
		flags |= 0x04
	}
	if attested != nil {
		flags |= 0x40
	}
	a.count++
	out := append(h[:], flags)
	out = binary.BigEndian.AppendUint32(out, a.count)
	return append(out, attested...)
}

// Register answers registration options with a PublicKeyCredential (JSON).
func (a *Authenticator) Register(options []byte) ([]byte, error) {
	ch, err := challengeOf(options)
	if err != nil {
		return nil, err
	}
	pub := a.key.PublicKey
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		return nil, err
	}
	attested := make([]byte, 16) // zero AAGUID
	attested = binary.BigEndian.AppendUint16(attested, uint16(len(a.id)))
	attested = append(append(attested, a.id...), cose...)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": a.authData(attested)})
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(a.clientData("webauthn.create", ch)), "attestationObject": b64(att)}})
}

// Assert answers step-up options with a signed PublicKeyCredential (JSON).
func (a *Authenticator) Assert(options []byte) ([]byte, error) {
	ch, err := challengeOf(options)
	if err != nil {
		return nil, err
	}
	cd := a.clientData("webauthn.get", ch)
	ad := a.authData(nil)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"id": b64(a.id), "rawId": b64(a.id), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(cd), "authenticatorData": b64(ad), "signature": b64(sig)}})
}
