package webui_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/custos-pam/custos/web/ui/uitest"
)

// client is a signed-in browser.
type client struct {
	t    testing.TB
	env  *uitest.Env
	http *http.Client
	csrf string
	user string
	// code is the TOTP code the client signed in with, if any.
	code string
}

func login(t testing.TB, env *uitest.Env, user string) *client {
	t.Helper()
	c := &client{t: t, env: env, http: env.Client(), user: user}
	body := map[string]string{"user": user, "password": uitest.Password}
	if c.code = uitest.Code(user, time.Now()); c.code != "" {
		body["totp"] = c.code
	}
	var out struct {
		CSRF string `json:"csrf"`
	}
	if st := c.do("POST", "/api/v1/session", body, &out); st != http.StatusOK {
		t.Fatalf("login %s: status %d", user, st)
	}
	c.csrf = out.CSRF
	return c
}

// do sends a same-origin request with the CSRF token and decodes a JSON
// answer into out (when not nil); it returns the status.
func (c *client) do(method, path string, body, out any) int {
	c.t.Helper()
	st, b, _ := c.raw(method, path, body, map[string]string{"X-CSRF-Token": c.csrf, "Origin": c.env.URL})
	if out != nil && st < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return st
}

func (c *client) raw(method, path string, body any, headers map[string]string) (int, []byte, http.Header) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.env.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b, res.Header
}

// ws opens a websocket with the client's cookie and the given Origin.
func (c *client) ws(path, origin string) (*websocket.Conn, *http.Response, error) {
	c.t.Helper()
	u, _ := url.Parse(c.env.URL)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 5 * time.Second, Jar: c.http.Jar}
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	return d.Dial("wss://"+u.Host+path, h)
}

// msg is any websocket message.
type msg map[string]any

func readMsg(t testing.TB, c *websocket.Conn, typ string, timeout time.Duration) msg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		_ = c.SetReadDeadline(deadline)
		var m msg
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for %q: %v", typ, err)
		}
		if m["type"] == "error" {
			t.Fatalf("waiting for %q: error message %v", typ, m["message"])
		}
		if m["type"] == typ {
			return m
		}
	}
}

func lastLineWith(screen, prefix string) string {
	var last string
	for _, l := range strings.Split(screen, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			last = strings.TrimSpace(l)
		}
	}
	return last
}
