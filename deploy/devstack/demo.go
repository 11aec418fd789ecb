package devstack

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-pam/custos/broker/identity"
)

// Custodians are the demo's break-glass custodians (deploy/dev/custos.yaml):
// they sign in and confirm an unseal with a password and a TOTP code.
var Custodians = []string{"erin", "frank"}

// totpStep is the RFC 6238 time step the broker checks codes against.
const totpStep = 30 * time.Second

// ensureTOTPSecrets writes a base32 TOTP secret (160 bits) to
// dir/totp/NAME for each custodian that has none; existing secrets are
// kept, so an authenticator app enrolled once keeps working.
func ensureTOTPSecrets(dir string) error {
	tdir := filepath.Join(dir, "totp")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	for _, u := range Custodians {
		path := filepath.Join(tdir, u)
		if exists(path) {
			continue
		}
		var key [20]byte
		if _, err := rand.Read(key[:]); err != nil {
			return fmt.Errorf("up: totp secret: %w", err)
		}
		secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(key[:])
		if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("up: totp secret: %w", err)
		}
	}
	return nil
}

// TOTPCode returns user's current TOTP code from dir/totp/USER and how
// long it stays current. The broker accepts each code once per user, so a
// second command within the same step needs the next code.
func TOTPCode(dir, user string, now time.Time) (string, time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(dir, "totp", user))
	if err != nil {
		return "", 0, fmt.Errorf("totp: %w (is %s a custodian? run make up first)", err, user)
	}
	key, err := identity.ParseTOTPSecret(string(b))
	if err != nil {
		return "", 0, fmt.Errorf("totp: %s: %w", user, err)
	}
	left := totpStep - time.Duration(now.UnixNano()%int64(totpStep))
	return identity.TOTP(key, now), left, nil
}
