package review

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-pam/custos/broker/identity"
)

// signer signs one action on one object for user: it checks the user's
// credentials again and returns the signature (printed name, UTC time,
// meaning, method). A wrong credential is a *broker.Error.
type signer interface {
	Sign(ctx context.Context, user, action, objectID, meaning string, reauth SignatureInput) (Signature, error)
}

// reauthenticator checks a signed-in user's password and TOTP code again
// (the re-authentication of every electronic signature: single-use code,
// guesses counted against the sign-in limiter); *identity.Service
// implements it.
type reauthenticator interface {
	Reauthenticate(ctx context.Context, user, password, totp, source string) (string, error)
}

// lookup finds a user's directory entry, for the printed name.
type lookup interface {
	Lookup(name string) (identity.Identity, bool)
}

// PasswordSigner is the default signer: a signature is the user's
// password and, when they have one, a current TOTP code, checked again
// by the identity service.
type PasswordSigner struct {
	Auth      reauthenticator
	Directory lookup
	// Now defaults to time.Now.
	Now func() time.Time
}

// Sign implements signer.
func (p PasswordSigner) Sign(ctx context.Context, user, action, objectID, meaning string, in SignatureInput) (Signature, error) {
	method, err := p.Auth.Reauthenticate(ctx, user, in.Password, in.TOTP, in.Source)
	if err != nil {
		return Signature{}, fmt.Errorf("sign %s: %w", action, err)
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	name := user
	if id, ok := p.Directory.Lookup(user); ok && id.Email != "" {
		name = user + " <" + id.Email + ">"
	}
	return Signature{PrintedName: name, Time: now().UTC(), Meaning: meaning, Method: method}, nil
}
