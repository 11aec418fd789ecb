package devstack

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Custodians are the demo's break-glass custodians (deploy/dev/custos.yaml):
// they sign in and confirm an unseal with a password and a TOTP code.
var Custodians = []string{"erin", "frank"}

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

// TOTPSecret returns user's base32 TOTP secret from dir/totp/USER, as
// `make up` wrote it.
func TOTPSecret(dir, user string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "totp", user))
	if err != nil {
		return "", fmt.Errorf("totp: %w (is %s a custodian? run make up first)", err, user)
	}
	return strings.TrimSpace(string(b)), nil
}
