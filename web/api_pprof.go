package web

import (
	"net/http"
	"net/http/pprof"

	"github.com/custos-pam/custos/broker/access"
)

// profiler wraps h so it answers only when listen.pprof is on, and then
// only to those the rules let profile the broker (security admins).
// net/http/pprof's own registration on http.DefaultServeMux is never
// served: the broker serves its own mux.
func (a *API) profiler(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.o.Config == nil || !a.o.Config.Listen.Pprof {
			WriteError(w, http.StatusNotFound, "pprof_disabled", "profiling is off (listen.pprof)")
			return
		}
		if !a.o.Access.May(principal(r).User, access.ProfileBroker) {
			WriteError(w, http.StatusForbidden, "forbidden", "profiles are for security admins")
			return
		}
		h(w, r)
	}
}

// servePprof serves one profile by name: profile (CPU, ?seconds=N),
// trace, cmdline, symbol, or a runtime profile (heap, allocs, goroutine,
// block, mutex, threadcreate).
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch name := r.PathValue("profile"); name {
	case "profile":
		pprof.Profile(w, r)
	case "trace":
		pprof.Trace(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
