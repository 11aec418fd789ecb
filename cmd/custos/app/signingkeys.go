package app

import (
	"crypto/ed25519"
	"fmt"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/recorder/manifest"
)

// verifyKeys are the public keys recordings and audit checkpoints are
// verified with: the current signing key's and every retired one's in
// recording.retired_signing_keys.
func verifyKeys(cfg *config.Config, signer *manifest.Signer) ([]ed25519.PublicKey, error) {
	retired, err := retiredKeys(cfg)
	if err != nil {
		return nil, err
	}
	return append([]ed25519.PublicKey{signer.Public()}, retired...), nil
}

// retiredKeys are the retired signing keys in
// recording.retired_signing_keys.
func retiredKeys(cfg *config.Config) ([]ed25519.PublicKey, error) {
	keys, err := manifest.LoadRetiredKeys(cfg.Recording.RetiredSigningKeys)
	if err != nil {
		return nil, fmt.Errorf("recording.retired_signing_keys: %w", err)
	}
	return keys, nil
}

// RotateSigningKey retires the recording signing key (its public half
// goes to recording.retired_signing_keys) and puts a new one in its
// place. The broker must be stopped.
func RotateSigningKey(cfg *config.Config) (manifest.Rotation, error) {
	return manifest.RotateSigner(cfg.Recording.SigningKey, cfg.Recording.RetiredSigningKeys)
}
