package web

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/custos-pam/custos/broker"
)

// ForwardedHeader marks a request one replica forwarded to another; it
// names the forwarding replica. A request that carries it is never
// forwarded again, so two replicas that each think the other owns a
// session cannot bounce a request between them.
const ForwardedHeader = "Custos-Forwarded-By"

// Forwarder hands a request about a live session that another replica
// (another broker on the same PostgreSQL store) runs to that replica, as
// a reverse proxy: the caller's own credentials (bearer token or session
// cookie, both valid on every replica since tokens are in the shared
// store), method, body and Host header go through unchanged, websocket
// upgrades included. The owner authenticates, authorizes and audits the
// request as if it had come to it directly; the forwarding replica has
// already checked the caller before it forwards.
type Forwarder struct {
	// Self is this broker's advertised URL; sessions it owns are never
	// forwarded.
	Self string
	// Transport reaches the other replicas. Default:
	// http.DefaultTransport.
	Transport http.RoundTripper
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Forward serves r through the replica that owns s and reports true. It
// reports false, leaving w untouched, when s is not live, has no owner,
// is owned by this broker, or r was itself forwarded.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, s broker.Session) bool {
	if f == nil || s.State != broker.SessionLive || s.Replica == "" || sameURL(s.Replica, f.Self) ||
		r.Header.Get(ForwardedHeader) != "" {
		return false
	}
	target, err := url.Parse(s.Replica)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return false
	}
	log := f.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("forwarding a request about a session another replica runs", "session", s.ID, "path", r.URL.Path,
		"replica", target.Host)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The owner checks the Origin of cookie sessions and
			// websockets against the host the browser used.
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(ForwardedHeader, f.Self)
		},
		Transport: f.Transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.Warn("the replica running a session cannot be reached", "session", s.ID, "replica", target.Host, "err", err)
			WriteError(w, http.StatusBadGateway, "owner_unreachable",
				"session "+s.ID+" runs on another broker replica that cannot be reached right now")
		},
	}
	rp.ServeHTTP(w, r)
	return true
}

// sameURL compares two advertised URLs, ignoring case and a trailing
// slash.
func sameURL(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}
