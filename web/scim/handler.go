// Package scim serves SCIM 2.0 provisioning (RFC 7643, RFC 7644) under
// /scim/v2: the organisation's identity provider (Okta, Entra ID) creates,
// updates, deactivates and deletes users and groups, which the broker
// keeps in its store (identity.Service.SCIMUpdate). The endpoints take a
// dedicated bearer token (identity.scim.token), never a user's token.
package scim

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/identity"
)

// Schema URNs.
const (
	schemaUser    = "urn:ietf:params:scim:schemas:core:2.0:User"
	schemaGroup   = "urn:ietf:params:scim:schemas:core:2.0:Group"
	schemaList    = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	schemaError   = "urn:ietf:params:scim:api:messages:2.0:Error"
	schemaPatch   = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	schemaSPC     = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	schemaResType = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	schemaSchema  = "urn:ietf:params:scim:schemas:core:2.0:Schema"
	contentType   = "application/scim+json"
	maxBody       = 1 << 20
	maxPageSize   = 500
)

// provisioner is the store of SCIM users and groups;
// *identity.Service implements it.
type provisioner interface {
	SCIMView(ctx context.Context) (*identity.SCIMState, error)
	SCIMUpdate(ctx context.Context, fn func(*identity.SCIMState) error) error
}

// refusals audits refusals of unauthenticated callers, bounded per source
// address; *audit.Throttle implements it.
type refusals interface {
	Record(ctx context.Context, source string, e audit.Entry) error
}

// Options configure the handler.
type Options struct {
	// Token is the SCIM bearer token. Required: without one there is no
	// SCIM endpoint.
	Token string
	// Store holds the users and groups. Required.
	Store provisioner
	// Rejections audits refused bearer tokens. Required.
	Rejections refusals
	// BaseURL is the broker's public URL, for meta.location. Default: "".
	BaseURL string
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Handler serves /scim/v2.
type Handler struct {
	tokenHash [32]byte
	store     provisioner
	rej       refusals
	base      string
	log       *slog.Logger
}

// New returns the handler.
func New(o Options) (*Handler, error) {
	if o.Token == "" || o.Store == nil || o.Rejections == nil {
		return nil, errors.New("scim: token, store and rejections are required")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Handler{tokenHash: sha256.Sum256([]byte(o.Token)), store: o.Store, rej: o.Rejections,
		base: strings.TrimSuffix(o.BaseURL, "/") + "/scim/v2", log: o.Log}, nil
}

// mux is the subset of web.Server the handler registers on.
type mux interface {
	Handle(pattern string, h http.Handler)
}

// Routes are the patterns Register adds.
var Routes = []string{
	"GET /scim/v2/Users", "POST /scim/v2/Users", "GET /scim/v2/Users/{id}", "PUT /scim/v2/Users/{id}",
	"PATCH /scim/v2/Users/{id}", "DELETE /scim/v2/Users/{id}",
	"GET /scim/v2/Groups", "POST /scim/v2/Groups", "GET /scim/v2/Groups/{id}", "PUT /scim/v2/Groups/{id}",
	"PATCH /scim/v2/Groups/{id}", "DELETE /scim/v2/Groups/{id}",
	"GET /scim/v2/ServiceProviderConfig", "GET /scim/v2/ResourceTypes", "GET /scim/v2/Schemas",
}

// Register adds the SCIM routes to m.
func (h *Handler) Register(m mux) {
	handlers := []http.HandlerFunc{
		h.listUsers, h.createUser, h.getUser, h.replaceUser, h.patchUser, h.deleteUser,
		h.listGroups, h.createGroup, h.getGroup, h.replaceGroup, h.patchGroup, h.deleteGroup,
		h.serviceProviderConfig, h.resourceTypes, h.schemas,
	}
	for i, p := range Routes {
		m.Handle(p, h.authenticated(handlers[i]))
	}
}

// authenticated refuses a request without the SCIM bearer token. The
// comparison is of SHA-256 digests in constant time; refusals are audited
// through the throttle like other anonymous refusals.
func (h *Handler) authenticated(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			tok, ok = strings.CutPrefix(auth, "bearer ")
		}
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], h.tokenHash[:]) != 1 {
			source := audit.Source(r.Context())
			reason := "missing SCIM bearer token"
			if ok {
				reason = "wrong SCIM bearer token"
			}
			if err := h.rej.Record(r.Context(), source, audit.Entry{Actor: "anonymous", Action: "scim.auth", Outcome: broker.OutcomeDenied,
				Reason: reason, Details: map[string]any{"source": source, "method": r.Method, "path": r.URL.Path}}); err != nil {
				h.log.Error("audit append failed", "action", "scim.auth", "err", err)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="custos-scim"`)
			writeError(w, http.StatusUnauthorized, "", "a valid SCIM bearer token is required")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next(w, r)
	})
}

// scimError is an RFC 7644 §3.12 error body.
type scimError struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	SCIMType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

func writeError(w http.ResponseWriter, status int, scimType, detail string) {
	writeJSON(w, status, scimError{Schemas: []string{schemaError}, Status: strconv.Itoa(status), SCIMType: scimType, Detail: detail})
}

// fail answers err: the broker's *Error by kind, anything else a 500
// (logged, not shown).
func (h *Handler) fail(w http.ResponseWriter, err error) {
	var e *broker.Error
	if errors.As(err, &e) {
		switch e.Kind {
		case broker.KindConflict:
			writeError(w, http.StatusConflict, "uniqueness", e.Message)
		case broker.KindNotFound:
			writeError(w, http.StatusNotFound, "", e.Message)
		default:
			t := e.Code
			if t != "invalidValue" && t != "invalidFilter" && t != "invalidPath" && t != "noTarget" && t != "invalidSyntax" && t != "mutability" {
				t = "invalidValue"
			}
			writeError(w, http.StatusBadRequest, t, e.Message)
		}
		return
	}
	h.log.Error("scim request failed", "err", err)
	writeError(w, http.StatusInternalServerError, "", "internal error")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func bad(scimType, msg string) *broker.Error {
	return &broker.Error{Kind: broker.KindInvalid, Code: scimType, Message: msg, Detail: msg}
}

func notFound(what string) *broker.Error {
	return &broker.Error{Kind: broker.KindNotFound, Code: "not_found", Message: what + " not found", Detail: what + " not found"}
}

// decode reads a JSON body into v.
func decode(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return bad("invalidSyntax", "request body is not valid JSON")
	}
	return nil
}

// page reads startIndex and count (RFC 7644 §3.4.2.4).
func page(r *http.Request, total int) (start, count int) {
	start, count = 1, maxPageSize
	if v, err := strconv.Atoi(r.URL.Query().Get("startIndex")); err == nil && v > 1 {
		start = v
	}
	if v, err := strconv.Atoi(r.URL.Query().Get("count")); err == nil && v >= 0 && v < maxPageSize {
		count = v
	}
	if start > total+1 {
		start = total + 1
	}
	return start, count
}

type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

func writeList(w http.ResponseWriter, r *http.Request, all []any) {
	start, count := page(r, len(all))
	end := min(start-1+count, len(all))
	items := all[start-1 : end]
	if items == nil {
		items = []any{}
	}
	writeJSON(w, http.StatusOK, listResponse{Schemas: []string{schemaList}, TotalResults: len(all), StartIndex: start,
		ItemsPerPage: len(items), Resources: items})
}
