package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// NewBrowser returns an HTTP client that behaves as a browser for the
// sign-in pages: it keeps cookies and follows redirects.
func NewBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// SignIn plays the user at the provider's login page: it opens authURL
// with browser (following redirects to the login form), posts user name
// and password, and follows the redirects that come back: to the
// application's redirect URI with the code and state. It returns the
// final response with its body read into the string.
func (o *OIDC) SignIn(ctx context.Context, browser *http.Client, authURL, user, password string) (*http.Response, string, error) {
	res, _, err := get(ctx, browser, authURL)
	if err != nil {
		return nil, "", fmt.Errorf("oidc sign-in: open: %w", err)
	}
	id := res.Request.URL.Query().Get("authRequestID")
	if id == "" {
		return nil, "", fmt.Errorf("oidc sign-in: not at the login page (%s %s)", res.Status, res.Request.URL.Path)
	}
	form := url.Values{"id": {id}, "username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.Issuer, "/")+"/login/username", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(browser, req)
}

// ApproveDevice plays the user of a device sign-in: it opens the
// verification page with the user code, signs in and allows the device.
func (o *OIDC) ApproveDevice(ctx context.Context, browser *http.Client, userCode, user, password string) error {
	base := strings.TrimRight(o.Issuer, "/")
	form := url.Values{"user_code": {userCode}, "username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/device/login", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, body, err := do(browser, req)
	if err != nil {
		return fmt.Errorf("oidc device: login: %w", err)
	}
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "confirm?action=allowed") {
		return fmt.Errorf("oidc device: login answered %s", res.Status)
	}
	res, _, err = get(ctx, browser, base+"/device/confirm?action=allowed")
	if err != nil {
		return fmt.Errorf("oidc device: confirm: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc device: confirm answered %s", res.Status)
	}
	return nil
}

func get(ctx context.Context, c *http.Client, u string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, "", err
	}
	return do(c, req)
}

func do(c *http.Client, req *http.Request) (*http.Response, string, error) {
	res, err := c.Do(req)
	if err != nil {
		// The URL may hold a code and state: keep them out of test logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			if u, perr := url.Parse(ue.URL); perr == nil {
				u.RawQuery = ""
				ue.URL = u.String()
			}
		}
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, string(b), err
}

// Authorize signs user in at authURL with a fresh browser that stops at
// the redirect back to the application (any URL starting with
// redirectPrefix) and returns the code and state it carries: what an
// attacker who intercepted the redirect would hold.
func (o *OIDC) Authorize(ctx context.Context, authURL, user, password, redirectPrefix string) (code, state string, err error) {
	b := NewBrowser()
	b.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirectPrefix) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	res, _, err := o.SignIn(ctx, b, authURL, user, password)
	if err != nil {
		return "", "", err
	}
	loc, err := res.Location()
	if err != nil {
		return "", "", fmt.Errorf("oidc authorize: no redirect back (%s)", res.Status)
	}
	q := loc.Query()
	if e := q.Get("error"); e != "" {
		return "", "", fmt.Errorf("oidc authorize: provider error %s", e)
	}
	return q.Get("code"), q.Get("state"), nil
}
