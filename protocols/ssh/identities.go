package sshproxy

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker/config"
)

// KeyIdentities maps the public keys registered in custos.yaml (users[].
// ssh_keys) to their users. It satisfies the proxy's identities interface.
// Reload replaces the whole map at once.
type KeyIdentities struct{ cur atomic.Pointer[keyIndex] }

type keyIndex struct {
	keys    map[string]string
	enabled map[string]bool
}

// NewKeyIdentities reads every enabled user's keys, expanding file:
// entries. A key registered to two users is an error.
func NewKeyIdentities(users []config.User) (*KeyIdentities, error) {
	x, err := buildKeyIndex(users)
	if err != nil {
		return nil, err
	}
	k := &KeyIdentities{}
	k.cur.Store(x)
	return k, nil
}

// Reload replaces the keys and users with those of users; on an error
// nothing changes.
func (k *KeyIdentities) Reload(users []config.User) error {
	x, err := buildKeyIndex(users)
	if err != nil {
		return err
	}
	k.cur.Store(x)
	return nil
}

func buildKeyIndex(users []config.User) (*keyIndex, error) {
	k := &keyIndex{keys: map[string]string{}, enabled: map[string]bool{}}
	for _, u := range users {
		if u.Disabled {
			continue
		}
		k.enabled[u.Name] = true
		lines, err := config.ResolveLines(u.SSHKeys)
		if err != nil {
			return nil, fmt.Errorf("ssh keys of %s: %w", u.Name, err)
		}
		for _, l := range lines {
			pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(l))
			if err != nil {
				return nil, fmt.Errorf("ssh keys of %s: %w", u.Name, err)
			}
			id := string(pk.Marshal())
			if other, dup := k.keys[id]; dup && other != u.Name {
				return nil, fmt.Errorf("ssh key %s is registered to both %s and %s", ssh.FingerprintSHA256(pk), other, u.Name)
			}
			k.keys[id] = u.Name
		}
	}
	return k, nil
}

// UserForKey returns the user the key is registered to.
func (k *KeyIdentities) UserForKey(key ssh.PublicKey) (string, bool) {
	u, ok := k.cur.Load().keys[string(key.Marshal())]
	return u, ok
}

// UserEnabled reports whether the user is configured and not disabled.
func (k *KeyIdentities) UserEnabled(user string) bool { return k.cur.Load().enabled[user] }
