package cli

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"time"
)

// loginResult is the broker's answer to a sign-in.
type loginResult struct {
	Token      string    `json:"token"`
	User       string    `json:"user"`
	ExpiresAt  time.Time `json:"expires_at"`
	AuthMethod string    `json:"auth_method"`
}

// ssoTimeout bounds how long the user has to finish signing in.
const ssoTimeout = 5 * time.Minute

var ssoPage = template.Must(template.New("done").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Custos</title></head><body><h1>{{.}}</h1><p>You can close this window and return to the terminal.</p></body></html>`))

// loginSSO signs in with the identity provider. The CLI listens on a
// loopback port, sends the browser to the provider and receives the
// authorization code there (RFC 8252); the broker redeems the code (it
// holds the client secret and the PKCE verifier) and answers an API
// token. With device, the provider's device grant is used instead.
func (g *globals) loginSSO(ctx context.Context, c *apiClient, device, noBrowser bool) (loginResult, error) {
	if device {
		return g.loginDevice(ctx, c)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return loginResult{}, fmt.Errorf("login --sso: listen on loopback: %w (use --device on this host)", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr())
	var start struct {
		AuthURL string `json:"auth_url"`
		State   string `json:"state"`
	}
	if err := c.do(ctx, "POST", "/api/v1/auth/sso/start", map[string]string{"redirect_uri": redirect}, &start); err != nil {
		return loginResult{}, fmt.Errorf("login --sso: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, ssoTimeout)
	defer cancel()
	type outcome struct {
		res loginResult
		err error
	}
	done := make(chan outcome, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		// Only the browser sent through this sign-in knows the state.
		if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(start.State)) != 1 {
			w.WriteHeader(http.StatusBadRequest)
			_ = ssoPage.Execute(w, "This sign-in does not belong to this terminal.")
			return
		}
		var o outcome
		if e := q.Get("error"); e != "" {
			o.err = fmt.Errorf("login --sso: the identity provider refused the sign-in (%.64s)", e)
		} else if err := c.do(r.Context(), "POST", "/api/v1/auth/sso/token", map[string]string{"state": start.State, "code": q.Get("code")}, &o.res); err != nil {
			o.err = fmt.Errorf("login --sso: %w", err)
		}
		if o.err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			_ = ssoPage.Execute(w, "Sign-in failed; see the terminal.")
		} else {
			_ = ssoPage.Execute(w, "Signed in to Custos as "+o.res.User+".")
		}
		select {
		case done <- o:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		// Shutdown, not Close: the page telling the browser the outcome
		// is still being written when the outcome arrives here.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	fmt.Fprintf(g.stderr, "Sign in in your browser; if it does not open, visit:\n\n  %s\n\n", start.AuthURL)
	if !noBrowser {
		openBrowser(start.AuthURL)
	}
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		return loginResult{}, errors.New("login --sso: no sign-in came back in time")
	}
}

// loginDevice signs in with the device authorization grant: the user
// opens the provider's page on any device and types the code shown.
func (g *globals) loginDevice(ctx context.Context, c *apiClient) (loginResult, error) {
	var d struct {
		Handle                  string    `json:"handle"`
		UserCode                string    `json:"user_code"`
		VerificationURI         string    `json:"verification_uri"`
		VerificationURIComplete string    `json:"verification_uri_complete"`
		ExpiresAt               time.Time `json:"expires_at"`
	}
	if err := c.do(ctx, "POST", "/api/v1/auth/sso/device", nil, &d); err != nil {
		return loginResult{}, fmt.Errorf("login --sso --device: %w", err)
	}
	fmt.Fprintf(g.stderr, "On any device, open\n\n  %s\n\nand enter the code  %s\n\n", d.VerificationURI, d.UserCode)
	if d.VerificationURIComplete != "" {
		fmt.Fprintf(g.stderr, "(or open %s)\n\n", d.VerificationURIComplete)
	}
	// Each call waits on the broker for a while; 202 means not yet.
	for {
		var res struct {
			loginResult
			Pending bool `json:"pending"`
		}
		if err := c.do(ctx, "POST", "/api/v1/auth/sso/device/token", map[string]string{"handle": d.Handle}, &res); err != nil {
			return loginResult{}, fmt.Errorf("login --sso --device: %w", err)
		}
		if !res.Pending {
			return res.loginResult, nil
		}
		if !d.ExpiresAt.IsZero() && time.Now().After(d.ExpiresAt) {
			return loginResult{}, errors.New("login --sso --device: the code expired before it was approved")
		}
		select {
		case <-ctx.Done():
			return loginResult{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// openBrowser tries the desktop's URL opener; failure is fine, the URL
// was printed.
func openBrowser(u string) {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	if p, err := exec.LookPath(name); err == nil {
		cmd := exec.Command(p, u)
		if cmd.Start() == nil {
			go func() { _ = cmd.Wait() }()
		}
	}
}
