package web

import (
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/sshca"
)

// SSHCertAPI serves POST /api/v1/ssh/certificate: a short-lived SSH user
// certificate for the caller's public key, signed by the broker's user CA
// (custos login --ssh).
type SSHCertAPI struct {
	Auth  Authenticator
	CA    *sshca.CA
	TTL   time.Duration
	Audit *audit.Log
}

// Register adds the route to s.
func (a *SSHCertAPI) Register(s *Server) {
	s.Handle("POST /api/v1/ssh/certificate", RequireToken(a.Auth, a.sign))
}

func (a *SSHCertAPI) sign(w http.ResponseWriter, r *http.Request) {
	p, _ := PrincipalFrom(r.Context())
	var in struct {
		PublicKey string `json:"public_key"`
	}
	if err := DecodeJSON(r, &in); err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(in.PublicKey)))
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_public_key", "public_key must be one line in authorized_keys format")
		return
	}
	// The certificate never outlives the API token that asked for it.
	ttl := a.TTL
	if left := time.Until(p.Token.ExpiresAt); left < ttl {
		ttl = left
	}
	cert, err := a.CA.Sign(pub, p.User, ttl)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_public_key", err.Error())
		return
	}
	_, _ = a.Audit.Append(r.Context(), audit.Entry{Actor: p.User, Action: "ssh.certificate.issue", Outcome: broker.OutcomeSuccess,
		Details: map[string]any{"fingerprint": ssh.FingerprintSHA256(pub), "serial": cert.Serial,
			"valid_before": time.Unix(int64(cert.ValidBefore), 0).UTC()}})
	WriteJSON(w, http.StatusOK, map[string]any{
		"certificate":  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		"valid_before": time.Unix(int64(cert.ValidBefore), 0).UTC(),
		"principal":    p.User,
	})
}
