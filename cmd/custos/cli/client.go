package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// apiClient talks to the broker's HTTP API with the saved token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// savedToken is what custos login stores in ~/.config/custos/token.json.
type savedToken struct {
	URL       string    `json:"url"`
	User      string    `json:"user"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// tokenPath is where the API token lives; $CUSTOS_CONFIG_DIR overrides the
// directory (tests and several identities on one machine).
func tokenPath() (string, error) {
	dir, err := configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "token.json"), nil
}

func loadToken() (savedToken, error) {
	var t savedToken
	p, err := tokenPath()
	if err != nil {
		return t, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return t, &unauthenticatedError{"not logged in: run custos login"}
	}
	if err != nil {
		return t, fmt.Errorf("read token: %w", err)
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return t, fmt.Errorf("read token %s: %w", p, err)
	}
	return t, nil
}

func saveToken(t savedToken) error {
	p, err := tokenPath()
	if err != nil {
		return err
	}
	return writeFileAtomic(p, t, 0o600)
}

// newClient builds a client for the broker URL (--url, $CUSTOS_URL or
// the saved profile). With authenticated set, it loads the saved token and
// refuses when there is none or it has expired.
func (g *globals) newClient(authenticated bool) (*apiClient, error) {
	if err := g.resolveBroker(); err != nil {
		return nil, err
	}
	base := g.url
	if base == "" {
		return nil, usageErr(errors.New("no broker URL: set --url or $CUSTOS_URL once, and custos login remembers it"))
	}
	if _, err := url.ParseRequestURI(base); err != nil {
		return nil, fmt.Errorf("broker URL %q: %w", base, err)
	}
	c := &apiClient{base: base, http: &http.Client{Timeout: 60 * time.Second, Transport: transport(g.caCert)}}
	if authenticated {
		t, err := loadToken()
		if err != nil {
			return nil, err
		}
		if t.URL != base {
			return nil, &unauthenticatedError{fmt.Sprintf("logged in to %s, not %s: run custos login", t.URL, base)}
		}
		if time.Now().After(t.ExpiresAt) {
			return nil, &unauthenticatedError{"token expired: run custos login"}
		}
		c.token = t.Token
	}
	return c, nil
}

// transport trusts the CA file ca (--ca-cert, $CUSTOS_CA_CERT or the
// profile) in addition to the system roots, for brokers with a private CA
// (the development stack's self-signed one).
func transport(ca string) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if ca != "" {
		t.TLSClientConfig = &tls.Config{RootCAs: brokerRoots(ca), MinVersion: tls.VersionTLS12}
	}
	return t
}

// brokerRoots is the system roots plus the CA file ca, when set.
func brokerRoots(ca string) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if ca != "" {
		if pem, err := os.ReadFile(ca); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
	}
	return pool
}

// apiError is an error answer from the broker.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("broker answered %d", e.Status)
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// do sends a JSON request and decodes a JSON answer into out (when non-nil).
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &unreachableError{err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &eb)
		return &apiError{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = append((*raw)[:0], b...)
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// printJSON prints raw API JSON, indented, for --output json.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonOutput reports whether --output json was asked for, and rejects
// unknown formats.
func (g *globals) jsonOutput() (bool, error) {
	switch g.output {
	case "json":
		return true, nil
	case "text", "":
		return false, nil
	default:
		return false, usageErr(fmt.Errorf("--output must be text or json, not %q", g.output))
	}
}

// show runs one API call and prints its answer: the object as JSON for
// --output json, otherwise through text. body, when non-nil, builds the
// request body after the output format was checked (it may prompt for a
// second factor). op prefixes errors, e.g. "breakglass status".
func show[T any](ctx context.Context, g *globals, op, method, path string, body func() (any, error), text func(T) error) error {
	asJSON, err := g.jsonOutput()
	if err != nil {
		return err
	}
	var in any
	if body != nil {
		if in, err = body(); err != nil {
			return err
		}
	}
	var out T
	if err := g.call(ctx, method, path, in, &out); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if asJSON {
		return g.printJSON(out)
	}
	return text(out)
}

// printed adapts a printer that cannot fail to show's text parameter.
func printed[T any](print func(T)) func(T) error {
	return func(v T) error { print(v); return nil }
}
