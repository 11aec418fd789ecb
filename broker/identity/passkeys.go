package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
)

// Passkey ceremony limits.
const (
	// ceremonyTTL is how long a registration or step-up challenge stays
	// usable.
	ceremonyTTL = 2 * time.Minute
	// maxPasskeys bounds the passkeys one user may register.
	maxPasskeys = 20
	// maxPasskeyName bounds a passkey's display name.
	maxPasskeyName = 64
	// maxPendingStepUps bounds the open step-up challenges per user.
	maxPendingStepUps = 16
)

// passkeyKey is the state-store document holding one user's passkeys,
// their WebAuthn user handle and a registration in progress.
func passkeyKey(user string) string { return "identity/passkeys/" + user }

type passkeyDoc struct {
	Handle  []byte           `json:"handle"`
	Keys    []storedPasskey  `json:"keys"`
	Pending *pendingCeremony `json:"pending,omitempty"`
}

type storedPasskey struct {
	ID         string              `json:"id"` // base64url credential ID
	Name       string              `json:"name"`
	Created    time.Time           `json:"created"`
	LastUsed   time.Time           `json:"last_used,omitzero"`
	Credential webauthn.Credential `json:"credential"`
}

type pendingCeremony struct {
	Session webauthn.SessionData `json:"session"`
	Expires time.Time            `json:"expires"`
}

// Passkey is a registered passkey or security key as the owner sees it.
type Passkey struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used,omitzero"`
	// UserVerified: the authenticator verified the user (PIN,
	// biometrics) when the passkey was registered.
	UserVerified bool `json:"user_verified"`
}

// waUser is a Custos user as the WebAuthn library sees them.
type waUser struct {
	name string
	doc  *passkeyDoc
}

func (u waUser) WebAuthnID() []byte          { return u.doc.Handle }
func (u waUser) WebAuthnName() string        { return u.name }
func (u waUser) WebAuthnDisplayName() string { return u.name }
func (u waUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, 0, len(u.doc.Keys))
	for _, k := range u.doc.Keys {
		out = append(out, k.Credential)
	}
	return out
}

// Passkeys registers, lists and removes users' WebAuthn credentials,
// kept in the state store so every replica knows them.
type Passkeys struct {
	wa    *webauthn.WebAuthn
	rp    config.WebAuthn
	store broker.Store
	audit auditLog
	now   func() time.Time
}

// NewPasskeys returns the passkey service for the relying party cfg
// names, with defaults from publicURL (see config.WebAuthn). now
// defaults to time.Now. Its methods may be called on a nil *Passkeys:
// they answer passkeys_disabled (List an empty list).
func NewPasskeys(cfg config.WebAuthn, publicURL string, store broker.Store, log *audit.Log, now func() time.Time) (*Passkeys, error) {
	if store == nil || log == nil {
		return nil, errors.New("passkeys: store and audit are required")
	}
	if now == nil {
		now = time.Now
	}
	rp := cfg.Resolved(publicURL)
	wa, err := webauthn.New(&webauthn.Config{
		RPID: rp.RPID, RPDisplayName: rp.RPName, RPOrigins: rp.Origins,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: relying party %q: %w", rp.RPID, err)
	}
	return &Passkeys{wa: wa, rp: rp, store: store, audit: log, now: now}, nil
}

// errNoPasskeys answers every call on a broker without a relying party
// (a nil *Passkeys).
var errNoPasskeys = &Error{Kind: broker.KindUnavailable, Code: "passkeys_disabled",
	Message: "passkeys are not available on this broker: set identity.webauthn.rp_id (a host name, not an IP address)",
	Detail:  "no relying party"}

// RelyingParty returns the relying party in force (defaults resolved).
func (p *Passkeys) RelyingParty() config.WebAuthn { return p.rp }

func readPasskeys(tx broker.Tx, user string) (*passkeyDoc, error) {
	doc := &passkeyDoc{}
	b, err := tx.GetState(passkeyKey(user))
	if errors.Is(err, broker.ErrNotFound) {
		return doc, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, doc); err != nil {
		return nil, fmt.Errorf("decode passkeys: %w", err)
	}
	return doc, nil
}

func writePasskeys(tx broker.Tx, user string, doc *passkeyDoc) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return tx.PutState(passkeyKey(user), b)
}

// BeginRegistration starts registering a passkey for user and returns
// the options for navigator.credentials.create. The authenticator must
// verify the user and keep a discoverable credential where it can.
func (p *Passkeys) BeginRegistration(ctx context.Context, user string) (json.RawMessage, error) {
	if p == nil {
		return nil, errNoPasskeys
	}
	var out json.RawMessage
	err := p.store.Update(ctx, func(tx broker.Tx) error {
		doc, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		if len(doc.Keys) >= maxPasskeys {
			return refusal(CodeBadRequest, fmt.Sprintf("at most %d passkeys per user: remove one first", maxPasskeys), "too many passkeys")
		}
		if len(doc.Handle) == 0 {
			doc.Handle = make([]byte, 32)
			if _, err := rand.Read(doc.Handle); err != nil {
				return err
			}
		}
		u := waUser{name: user, doc: doc}
		creation, session, err := p.wa.BeginRegistration(u,
			webauthn.WithExclusions(webauthn.Credentials(u.WebAuthnCredentials()).CredentialDescriptors()),
			webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
				ResidentKey: protocol.ResidentKeyRequirementPreferred, UserVerification: protocol.VerificationRequired}))
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		doc.Pending = &pendingCeremony{Session: *session, Expires: p.now().Add(ceremonyTTL)}
		if out, err = json.Marshal(creation); err != nil {
			return err
		}
		return writePasskeys(tx, user, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: register %s: %w", user, err)
	}
	return out, nil
}

// FinishRegistration checks the authenticator's answer to the pending
// registration (challenge, origin, RP ID, user verification) and stores
// the new passkey under name. It is audited as auth.passkey.register.
func (p *Passkeys) FinishRegistration(ctx context.Context, user, name string, credential []byte) (Passkey, error) {
	if p == nil {
		return Passkey{}, errNoPasskeys
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > maxPasskeyName {
		return Passkey{}, refusal(CodeBadRequest, fmt.Sprintf("a passkey needs a name of 1 to %d characters", maxPasskeyName), "bad passkey name")
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(credential)
	if err != nil {
		return Passkey{}, p.refuseRegistration(ctx, user, name, "the authenticator's answer could not be read", "parse: "+errText(err))
	}
	// Take the pending registration in a transaction of its own: one
	// answer per registration, right or wrong.
	var (
		pending *pendingCeremony
		doc     *passkeyDoc
	)
	if err := p.store.Update(ctx, func(tx broker.Tx) error {
		var err error
		if doc, err = readPasskeys(tx, user); err != nil {
			return err
		}
		pending, doc.Pending = doc.Pending, nil
		if pending == nil {
			return nil
		}
		return writePasskeys(tx, user, doc)
	}); err != nil {
		return Passkey{}, fmt.Errorf("passkeys: register %s: %w", user, err)
	}
	if pending == nil || p.now().After(pending.Expires) {
		return Passkey{}, p.refuseRegistration(ctx, user, name, "no registration in progress, or it expired: start again", "no pending registration")
	}
	cred, err := p.wa.CreateCredential(waUser{name: user, doc: doc}, pending.Session, parsed)
	if err != nil {
		return Passkey{}, p.refuseRegistration(ctx, user, name, "the passkey was not accepted: "+publicReason(err), "create credential: "+errText(err))
	}
	if !cred.Flags.UserVerified {
		return Passkey{}, p.refuseRegistration(ctx, user, name, "the authenticator did not verify you (PIN or biometrics): use one that does", "no user verification")
	}
	id := base64.RawURLEncoding.EncodeToString(cred.ID)
	var view Passkey
	err = p.store.Update(ctx, func(tx broker.Tx) error {
		doc, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		if len(doc.Keys) >= maxPasskeys {
			return refusal(CodeBadRequest, fmt.Sprintf("at most %d passkeys per user: remove one first", maxPasskeys), "too many passkeys")
		}
		for _, k := range doc.Keys {
			if k.ID == id {
				return refusal(CodeBadRequest, "this passkey is already registered", "duplicate credential")
			}
		}
		k := storedPasskey{ID: id, Name: name, Created: p.now().UTC(), Credential: *cred}
		doc.Keys = append(doc.Keys, k)
		if err := writePasskeys(tx, user, doc); err != nil {
			return err
		}
		view = k.view()
		_, err = p.audit.AppendTx(ctx, tx, audit.Entry{Actor: user, Action: "auth.passkey.register", Target: user,
			Outcome: "success", Details: map[string]any{"passkey": id, "name": name}})
		return err
	})
	var e *Error
	if errors.As(err, &e) {
		return Passkey{}, p.refuseRegistration(ctx, user, name, e.Message, e.Detail)
	}
	if err != nil {
		return Passkey{}, fmt.Errorf("passkeys: register %s: %w", user, err)
	}
	return view, nil
}

func (p *Passkeys) refuseRegistration(ctx context.Context, user, name, msg, detail string) error {
	if _, err := p.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: user, Action: "auth.passkey.register", Target: user,
		Outcome: "denied", Reason: detail, Details: map[string]any{"name": name}}); err != nil {
		return fmt.Errorf("passkeys: audit: %w", err)
	}
	return refusal(CodeBadRequest, msg, detail)
}

func (k storedPasskey) view() Passkey {
	return Passkey{ID: k.ID, Name: k.Name, Created: k.Created, LastUsed: k.LastUsed, UserVerified: k.Credential.Flags.UserVerified}
}

// List returns user's passkeys, oldest first.
func (p *Passkeys) List(ctx context.Context, user string) ([]Passkey, error) {
	if p == nil {
		return nil, nil
	}
	var out []Passkey
	err := p.store.View(ctx, func(tx broker.Tx) error {
		doc, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		out = make([]Passkey, 0, len(doc.Keys))
		for _, k := range doc.Keys {
			out = append(out, k.view())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: list %s: %w", user, err)
	}
	return out, nil
}

// HasPasskey is Has, for Service.SetPasskeys.
func (p *Passkeys) HasPasskey(ctx context.Context, user string) (bool, error) {
	return p.Has(ctx, user)
}

// Has reports whether user has registered a passkey.
func (p *Passkeys) Has(ctx context.Context, user string) (bool, error) {
	keys, err := p.List(ctx, user)
	return len(keys) > 0, err
}

// Remove deletes user's passkey id, audited as auth.passkey.remove. The
// caller checks the step-up the removal needs (StepUp, action
// ActionPasskeyRemove, object id) first.
func (p *Passkeys) Remove(ctx context.Context, user, id string) error {
	if p == nil {
		return errNoPasskeys
	}
	err := p.store.Update(ctx, func(tx broker.Tx) error {
		doc, err := readPasskeys(tx, user)
		if err != nil {
			return err
		}
		i := -1
		for j, k := range doc.Keys {
			if k.ID == id {
				i = j
			}
		}
		if i < 0 {
			return refusal(CodeNotFound, "no such passkey", "unknown passkey")
		}
		name := doc.Keys[i].Name
		doc.Keys = append(doc.Keys[:i], doc.Keys[i+1:]...)
		if err := writePasskeys(tx, user, doc); err != nil {
			return err
		}
		_, err = p.audit.AppendTx(ctx, tx, audit.Entry{Actor: user, Action: "auth.passkey.remove", Target: user,
			Outcome: "success", Details: map[string]any{"passkey": id, "name": name}})
		return err
	})
	if err != nil {
		return fmt.Errorf("passkeys: remove: %w", err)
	}
	return nil
}

// publicReason is what a WebAuthn failure may tell the user: the
// library's short description (RP ID, origin, challenge or user
// verification mismatch), never key material.
func publicReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "verification failed"
}

// errText is a WebAuthn failure for the audit log.
func errText(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		s := pe.Type + ": " + pe.Details
		if pe.DevInfo != "" {
			s += " (" + pe.DevInfo + ")"
		}
		return s
	}
	return err.Error()
}
