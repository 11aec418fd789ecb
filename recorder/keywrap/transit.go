package keywrap

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	vault "github.com/hashicorp/vault/api"
)

// Transit wraps data keys with a named Vault Transit key: new keys come
// from transit/datakey/plaintext/<key>, unwrapping uses
// transit/decrypt/<key>. The key never leaves Vault.
type Transit struct {
	client *vault.Client
	mount  string
	key    string
}

// NewTransit returns a wrapper over the Transit engine at mount (default
// "transit") using the named key (default "custos-recordings"). The client
// carries the address and token.
func NewTransit(client *vault.Client, mount, key string) *Transit {
	if mount == "" {
		mount = "transit"
	}
	if key == "" {
		key = "custos-recordings"
	}
	return &Transit{client: client, mount: strings.Trim(mount, "/"), key: key}
}

// KeyID returns "<mount>/<key>".
func (t *Transit) KeyID() string { return t.mount + "/" + t.key }

// NewDataKey asks Vault for a fresh 256-bit data key and its wrapped form.
func (t *Transit) NewDataKey(ctx context.Context) ([]byte, Wrapped, error) {
	s, err := t.client.Logical().WriteWithContext(ctx, t.mount+"/datakey/plaintext/"+t.key,
		map[string]any{"bits": 256})
	if err != nil {
		return nil, Wrapped{}, fmt.Errorf("keywrap: vault transit datakey %s: %w", t.KeyID(), err)
	}
	if s == nil || s.Data == nil {
		return nil, Wrapped{}, fmt.Errorf("keywrap: vault transit datakey %s: empty response", t.KeyID())
	}
	pt, _ := s.Data["plaintext"].(string)
	ct, _ := s.Data["ciphertext"].(string)
	key, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(key) != DataKeySize || ct == "" {
		return nil, Wrapped{}, fmt.Errorf("keywrap: vault transit datakey %s: malformed response", t.KeyID())
	}
	return key, Wrapped{Wrapper: "vault-transit", KeyID: t.KeyID(), Ciphertext: ct}, nil
}

// Unwrap asks Vault to decrypt a wrapped data key.
func (t *Transit) Unwrap(ctx context.Context, w Wrapped) ([]byte, error) {
	if w.Wrapper != "vault-transit" {
		return nil, fmt.Errorf("%w: %s %s", ErrWrongWrapper, w.Wrapper, w.KeyID)
	}
	mount, key, ok := strings.Cut(w.KeyID, "/")
	if !ok || key == "" {
		return nil, fmt.Errorf("keywrap: vault transit: bad key id %q", w.KeyID)
	}
	s, err := t.client.Logical().WriteWithContext(ctx, mount+"/decrypt/"+key,
		map[string]any{"ciphertext": w.Ciphertext})
	if err != nil {
		return nil, fmt.Errorf("keywrap: vault transit decrypt %s: %w", w.KeyID, err)
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("keywrap: vault transit decrypt: empty response")
	}
	pt, _ := s.Data["plaintext"].(string)
	dk, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || len(dk) != DataKeySize {
		return nil, errors.New("keywrap: vault transit decrypt: malformed response")
	}
	return dk, nil
}
