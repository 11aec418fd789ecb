package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// totpKeyState is the state-store document holding a TOTP secret a user
// enrolled in the web UI (users whose secret is in the config file keep
// it there), and an enrolment waiting for its first code.
func totpKeyState(user string) string { return "identity/totp/" + user }

type totpDoc struct {
	Secret  string    `json:"secret,omitempty"` // base32; set once confirmed
	Pending string    `json:"pending,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	Since   time.Time `json:"since,omitzero"`
}

// totpEnrolTTL is how long a new secret waits for its first code.
const totpEnrolTTL = 10 * time.Minute

// TOTPEnrolment is a new TOTP secret as the authenticator app takes it.
type TOTPEnrolment struct {
	// URL is the otpauth:// URL (issuer Custos, the user's name).
	URL string `json:"otpauth_url"`
	// Secret is the base32 secret, for typing in by hand.
	Secret string `json:"secret"`
	// QR is the URL as a QR code, a PNG data URL.
	QR string `json:"qr_png"`
	// Expires is when the enrolment lapses unless confirmed with a code.
	Expires time.Time `json:"expires"`
}

// StoreTOTP keeps TOTP secrets users enrol themselves, in the state store
// so every replica signs them in with it.
type StoreTOTP struct {
	Store broker.Store
	Audit auditLog
	// Dir, when set, refuses enrolment to users whose secret is in the
	// config file (they change it there) and to users without a password.
	Dir *Directory
	// Guard claims the confirming code, so it cannot sign in too.
	// Default: a StoreStepGuard over Store (the one sign-in uses).
	Guard StepGuard
	Now   func() time.Time
}

func (s StoreTOTP) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func readTOTP(tx broker.Tx, user string) (totpDoc, error) {
	var d totpDoc
	b, err := tx.GetState(totpKeyState(user))
	if errors.Is(err, broker.ErrNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode totp: %w", err)
	}
	return d, nil
}

func writeTOTP(tx broker.Tx, user string, d totpDoc) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return tx.PutState(totpKeyState(user), b)
}

// KeyOf returns user's enrolled secret, or nil.
func (s StoreTOTP) KeyOf(ctx context.Context, user string) ([]byte, error) {
	var d totpDoc
	if err := s.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		d, err = readTOTP(tx, user)
		return err
	}); err != nil {
		return nil, fmt.Errorf("totp: %w", err)
	}
	if d.Secret == "" {
		return nil, nil
	}
	return ParseTOTPSecret(d.Secret)
}

// Enrolled reports whether user has a secret in the store.
func (s StoreTOTP) Enrolled(ctx context.Context, user string) (bool, error) {
	k, err := s.KeyOf(ctx, user)
	return k != nil, err
}

// Begin generates a new secret for user (160 bits, SHA-1, 6 digits, 30
// seconds: what every authenticator app reads) and keeps it pending
// until Confirm sees a code from it. The caller decides whether a user
// who already has a secret may replace it (a step-up).
func (s StoreTOTP) Begin(ctx context.Context, user string) (TOTPEnrolment, error) {
	if s.Dir != nil {
		a, ok := s.Dir.now().users[user]
		switch {
		case !ok || !a.hasPass:
			return TOTPEnrolment{}, refusal(CodeBadRequest, "only local users with a password enrol a TOTP code here; single sign-on users use their provider's", "not a local user")
		case a.totpKey != nil:
			return TOTPEnrolment{}, refusal(CodeBadRequest, "your TOTP secret is set in the broker's config file: an operator changes it there", "config totp")
		}
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Custos", AccountName: user, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Period: uint(totpStep / time.Second)})
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("totp: generate: %w", err)
	}
	img, err := key.Image(240, 240)
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("totp: qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return TOTPEnrolment{}, fmt.Errorf("totp: qr code: %w", err)
	}
	out := TOTPEnrolment{URL: key.URL(), Secret: key.Secret(), QR: "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()),
		Expires: s.now().Add(totpEnrolTTL).UTC()}
	err = s.Store.Update(ctx, func(tx broker.Tx) error {
		d, err := readTOTP(tx, user)
		if err != nil {
			return err
		}
		d.Pending, d.Expires = key.Secret(), out.Expires
		return writeTOTP(tx, user, d)
	})
	if err != nil {
		return TOTPEnrolment{}, fmt.Errorf("totp: enrol: %w", err)
	}
	return out, nil
}

// Confirm checks code against the pending secret and, when it matches,
// makes it user's second factor from the next sign-in on (audited as
// auth.totp.enrol). The code is claimed in guard first, so it cannot
// also sign in.
func (s StoreTOTP) Confirm(ctx context.Context, user, code string) error {
	guard := s.Guard
	if guard == nil {
		guard = StoreStepGuard{Store: s.Store}
	}
	var d totpDoc
	if err := s.Store.View(ctx, func(tx broker.Tx) error {
		var err error
		d, err = readTOTP(tx, user)
		return err
	}); err != nil {
		return fmt.Errorf("totp: confirm: %w", err)
	}
	if d.Pending == "" || s.now().After(d.Expires) {
		return refusal(CodeBadRequest, "no TOTP enrolment in progress, or it expired: start again", "no pending totp")
	}
	key, err := ParseTOTPSecret(d.Pending)
	if err != nil {
		return fmt.Errorf("totp: confirm: %w", err)
	}
	step, ok := checkTOTP(key, code, s.now())
	if !ok {
		return refusal(CodeBadRequest, "wrong code: check the authenticator app's clock and type the current code", "wrong totp code")
	}
	if err := guard.Claim(ctx, user, step); errors.Is(err, ErrCodeReused) {
		return refusal(CodeBadRequest, "this code was already used: wait for the next one", "totp code reused")
	} else if err != nil {
		return fmt.Errorf("totp: confirm: %w", err)
	}
	err = s.Store.Update(ctx, func(tx broker.Tx) error {
		cur, err := readTOTP(tx, user)
		if err != nil {
			return err
		}
		if cur.Pending != d.Pending {
			return refusal(CodeBadRequest, "another enrolment was started meanwhile: start again", "pending totp changed")
		}
		cur.Secret, cur.Pending, cur.Expires, cur.Since = cur.Pending, "", time.Time{}, s.now().UTC()
		if err := writeTOTP(tx, user, cur); err != nil {
			return err
		}
		_, err = s.Audit.AppendTx(ctx, tx, audit.Entry{Actor: user, Action: "auth.totp.enrol", Target: user, Outcome: "success"})
		return err
	})
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if err != nil {
		return fmt.Errorf("totp: confirm: %w", err)
	}
	return nil
}
