package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	yaml "go.yaml.in/yaml/v3"

	"github.com/custos-pam/custos/approvals/slack/slacktest"
)

// Request → Slack click → grant usable: the stack's broker runs without
// Slack, so the driver starts a second `custos serve` from the deployed
// configuration (.dev/custos.yaml: same Vault, MinIO, targets, users and
// policies) with its own ports, data directory and SQLite store, and Slack
// approvals pointed at the Slack Web API emulator (approvals/slack/
// slacktest) running in the driver. One run: alice asks for demo-pg
// readonly through the API; when the broker's approval message appears
// in the emulator's channel, bob's click is signed as Slack signs it and
// posted to the broker's /slack/interactions; then alice fetches a
// connection token and runs `select 1` through the broker's PostgreSQL
// proxy. The clock runs from the request until that query answers; the
// click itself is instant (no human in the loop).

const slackChannel = "C0APPROVALS"

// benchTB lets the emulator, written for tests, run in the driver: it
// needs only Helper and Cleanup.
type benchTB struct {
	testing.TB
	cleanups []func()
}

func (t *benchTB) Helper()          {}
func (t *benchTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }
func (t *benchTB) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// slackBroker is the second broker the scenario starts.
type slackBroker struct {
	url, pgPort string
	cmd         *exec.Cmd
	dir         string
	client      *http.Client
}

func (s *stack) caHTTPClient() (*http.Client, error) {
	pem, err := os.ReadFile(s.env["CUSTOS_CA_CERT"])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// startSlackBroker writes the deployed config with Slack on (and its own
// ports, data and store) and starts `custos serve` with it.
func (s *stack) startSlackBroker(emu *slacktest.Server, bot, secret string) (*slackBroker, error) {
	raw, err := os.ReadFile(filepath.Join(s.dev, "custos.yaml"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("bench: deployed config: %w", err)
	}
	dir := filepath.Join(s.tmp, "slack-broker")
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	listen, _ := cfg["listen"].(map[string]any)
	if listen == nil {
		return nil, fmt.Errorf("bench: deployed config has no listen section")
	}
	listen["http"] = fmt.Sprintf("127.0.0.1:%d", ports[0])
	listen["ssh"] = fmt.Sprintf("127.0.0.1:%d", ports[1])
	listen["postgres"] = fmt.Sprintf("127.0.0.1:%d", ports[2])
	listen["data_dir"] = data
	url := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	cfg["public_url"] = url
	cfg["store"] = map[string]any{"driver": "sqlite", "path": filepath.Join(data, "custos.db")}
	if rec, ok := cfg["recording"].(map[string]any); ok {
		if s3, ok := rec["s3"].(map[string]any); ok {
			s3["prefix"] = "custos-bench-slack/"
		}
	}
	cfg["slack"] = map[string]any{"enabled": true, "bot_token": "env:CUSTOS_BENCH_SLACK_BOT",
		"signing_secret": "env:CUSTOS_BENCH_SLACK_SECRET", "api_url": emu.APIURL(), "channel": slackChannel}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "custos.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return nil, err
	}
	brokerToken, err := os.ReadFile(filepath.Join(s.dev, "vault", "out", "broker-token"))
	if err != nil {
		return nil, fmt.Errorf("bench: broker vault token: %w", err)
	}
	env := os.Environ()
	for k, v := range s.env {
		if k == "VAULT_TOKEN" {
			v = strings.TrimSpace(string(brokerToken)) // the broker's least-privilege token, as make up runs it
		}
		env = append(env, k+"="+v)
	}
	if s.env["CUSTOS_MASKING_KEY"] == "" {
		env = append(env, "CUSTOS_MASKING_KEY="+randomHex(16))
	}
	env = append(env, "CUSTOS_BENCH_SLACK_BOT="+bot, "CUSTOS_BENCH_SLACK_SECRET="+secret, "HOME="+data)
	logf, err := os.Create(filepath.Join(dir, "custos.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(s.custos, "serve", "--config", path)
	cmd.Env, cmd.Stdout, cmd.Stderr, cmd.Dir = env, logf, logf, dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: slack broker: %w", err)
	}
	logf.Close()
	c, err := s.caHTTPClient()
	if err != nil {
		return nil, err
	}
	b := &slackBroker{url: url, pgPort: strconv.Itoa(ports[2]), cmd: cmd, dir: dir, client: c}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := c.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return b, nil
			}
		}
		if time.Now().After(deadline) {
			b.stop()
			log, _ := os.ReadFile(filepath.Join(dir, "custos.log"))
			return nil, fmt.Errorf("bench: slack broker did not come up: %s", tail(log, 600))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *slackBroker) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = b.cmd.Process.Kill()
		<-done
	}
}

// api calls the broker's API as the holder of token.
func (b *slackBroker) api(method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s", method, path, res.Status)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

// login signs user in with the CLI against the second broker and returns
// the API token the CLI saved.
func (s *stack) loginAt(url, user string) (string, error) {
	dir := filepath.Join(s.tmp, "cli-slack", user)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.custos, "login", "--user", user, "--password-stdin")
	cmd.Env = append(os.Environ(), "CUSTOS_URL="+url, "CUSTOS_CA_CERT="+s.env["CUSTOS_CA_CERT"], "CUSTOS_CONFIG_DIR="+dir)
	cmd.Stdin = strings.NewReader(s.env["CUSTOS_DEMO_PASSWORD"] + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: login %s: %w: %s", user, err, firstLine(string(out)))
	}
	raw, err := os.ReadFile(filepath.Join(dir, "token.json"))
	if err != nil {
		return "", err
	}
	var t struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &t); err != nil || t.Token == "" {
		return "", fmt.Errorf("bench: login %s: no token saved", user)
	}
	return t.Token, nil
}

// slackRun is one request → click → query, with its parts in ms.
type slackRun struct{ total, posted, clicked, usable float64 }

func (b *slackBroker) slackOnce(emu *slacktest.Server, token string, n int) (slackRun, error) {
	var r slackRun
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	start := time.Now()
	var req struct {
		ID string `json:"id"`
	}
	body := map[string]string{"target": "demo-pg", "role": "readonly", "duration": "10m", "reason": fmt.Sprintf("BENCH-%d make bench", n)}
	if err := b.api("POST", "/api/v1/requests", token, body, &req); err != nil {
		return r, fmt.Errorf("bench: slack request: %w", err)
	}
	deadline := start.Add(30 * time.Second)
	var msg slacktest.Message
	for found := false; !found; {
		for _, m := range emu.Messages(slackChannel) {
			if strings.Contains(m.Content(), req.ID) && len(m.Buttons()) > 0 {
				msg, found = m, true
				break
			}
		}
		if !found {
			if time.Now().After(deadline) {
				return r, fmt.Errorf("bench: request not posted to Slack within 30 s")
			}
			time.Sleep(time.Millisecond)
		}
	}
	r.posted = ms(time.Since(start))
	payload, err := emu.Click("U0BOB", slackChannel, msg.TS, "custos_approve")
	if err != nil {
		return r, err
	}
	signed := emu.Sign(payload)
	hreq, err := http.NewRequest(http.MethodPost, b.url+"/slack/interactions", bytes.NewReader(signed.Body))
	if err != nil {
		return r, err
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.Header.Set("X-Slack-Request-Timestamp", signed.Timestamp)
	hreq.Header.Set("X-Slack-Signature", signed.Signature)
	res, err := b.client.Do(hreq)
	if err != nil {
		return r, fmt.Errorf("bench: slack click: %w", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return r, fmt.Errorf("bench: slack click: %s", res.Status)
	}
	r.clicked = ms(time.Since(start))
	for {
		err := b.useGrant(token)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("bench: grant not usable within 30 s: %w", err)
		}
		time.Sleep(time.Millisecond)
	}
	r.total = ms(time.Since(start))
	r.usable = r.total - r.clicked
	return r, nil
}

// useGrant fetches a connection token and runs select 1 through the
// broker's PostgreSQL proxy.
func (b *slackBroker) useGrant(token string) error {
	var t struct {
		Token string `json:"token"`
	}
	if err := b.api("POST", "/api/v1/db/token", token, map[string]string{"target": "demo-pg", "role": "readonly"}, &t); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%s dbname=demo-pg user=alice sslmode=require", b.pgPort))
	if err != nil {
		return err
	}
	cfg.Password = t.Token
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var one int
	return c.QueryRow(ctx, "select 1").Scan(&one)
}

// slackApproval runs the request → Slack click → grant usable scenario.
func (b *bench) slackApproval() error {
	tb := &benchTB{}
	defer tb.done()
	bot, secret := "xoxb-bench-"+randomHex(8), randomHex(16)
	emu := slacktest.New(tb, slacktest.Options{BotToken: bot, SigningSecret: secret,
		Users: []slacktest.User{{ID: "U0ALICE", Name: "alice"}, {ID: "U0BOB", Name: "bob"}, {ID: "U0CAROL", Name: "carol"},
			{ID: "U0SAM", Name: "sam"}, {ID: "U0ERIN", Name: "erin"}, {ID: "U0FRANK", Name: "frank"}},
		Channels: []slacktest.Channel{{ID: slackChannel, Name: "approvals"}}})
	sb, err := b.s.startSlackBroker(emu, bot, secret)
	if err != nil {
		return err
	}
	defer sb.stop()
	token, err := b.s.loginAt(sb.url, "alice")
	if err != nil {
		return err
	}
	var total, posted, clicked, usable []float64
	for i := 0; i < b.p.runs; i++ {
		r, err := sb.slackOnce(emu, token, i)
		if err != nil {
			return err
		}
		total, posted, clicked, usable = append(total, r.total), append(posted, r.posted), append(clicked, r.clicked), append(usable, r.usable)
	}
	scn := "request → Slack emulator click → grant usable"
	b.add(newRow(scn, shared, "request to approval message posted", "ms", posted, nil))
	b.add(newRow(scn, shared, "request to click answered", "ms", clicked, nil))
	b.add(newRow(scn, shared, "click answered to first query (token, connect, select 1)", "ms", usable, nil))
	r := newRow(scn, shared, "end-to-end", "ms", total, atMost("≤ 300 ms", 300))
	r.Plot = "latency"
	b.add(r)
	return nil
}
