package web

import (
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// sshCertificate serves POST /api/v1/ssh/certificate: a short-lived SSH
// user certificate for the caller's public key, signed by the broker's
// user CA (custos login --ssh).
func (a *API) sshCertificate(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if a.o.SSHCA == nil {
		unavailable(w, "no_ssh_ca", "this broker has no SSH user CA")
		return
	}
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
	ttl := a.o.SSHCertTTL
	if left := time.Until(p.Token.ExpiresAt); left < ttl {
		ttl = left
	}
	cert, err := a.o.SSHCA.Sign(pub, p.User, ttl)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_public_key", err.Error())
		return
	}
	a.record(r.Context(), audit.Entry{Actor: p.User, Action: "ssh.certificate.issue", Outcome: broker.OutcomeSuccess,
		Details: map[string]any{"fingerprint": ssh.FingerprintSHA256(pub), "serial": cert.Serial,
			"valid_before": time.Unix(int64(cert.ValidBefore), 0).UTC()}})
	out := map[string]any{
		"certificate":  strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))),
		"valid_before": time.Unix(int64(cert.ValidBefore), 0).UTC(),
		"principal":    p.User,
	}
	// Where the SSH proxy is and the host key it presents, for
	// custos ssh and custos ssh-config.
	if a.o.SSHPort != "" && a.o.SSHHostKey != nil {
		out["ssh_host"], out["ssh_port"] = a.o.SSHHost, a.o.SSHPort
		out["host_key"] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(a.o.SSHHostKey)))
	}
	WriteJSON(w, http.StatusOK, out)
}
