package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMetricsDuringSession scrapes /metrics of a real broker while a psql
// and an ssh session run through it and finds every family an operator
// pages on, with values that only the live sessions explain.
func TestMetricsDuringSession(t *testing.T) {
	st := startFullStack(t, stackOptions{})
	alice, sshPort, pgPort, b := st.alice, st.sshPort, st.pgPort, st.b

	pgReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-pg", "--role", "readonly", "--for", "10m", "--reason", "INC-1", "-o", "json"))
	b.ok("bob", "approve", pgReq.ID)
	sshReq := decode[jsonRequest](t, b.ok("alice", "request", "demo-ssh", "--role", "ops", "--for", "10m", "--reason", "INC-2", "-o", "json"))
	b.ok("bob", "approve", sshReq.ID)
	// A third request stays pending.
	b.ok("alice", "request", "demo-pg", "--role", "readwrite", "--for", "10m", "--reason", "INC-3")
	token := strings.TrimSpace(b.ok("alice", "db", "token", "demo-pg"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	psqlDone, sshDone := make(chan string, 1), make(chan string, 1)
	go func() {
		cmd := exec.CommandContext(ctx, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
			fmt.Sprintf("host=127.0.0.1 port=%d dbname=demo-pg user=alice sslmode=require", pgPort),
			"-c", "select repeat('x', 5000)", "-c", "select pg_sleep(6)")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+token, "PGCONNECT_TIMEOUT=10")
		o, err := cmd.CombinedOutput()
		psqlDone <- fmt.Sprintf("%v: %s", err, o)
	}()
	go func() {
		o, err := sshRun(t, alice, sshPort, "demo-ssh", "head -c 3000 /dev/zero | tr '\\0' y; sleep 6")
		sshDone <- fmt.Sprintf("%v: %.200s", err, o)
	}()

	// Each want is a series and the least value it must reach while both
	// sessions run.
	wants := []struct {
		series string
		min    float64
	}{
		{`custos_sessions_active{protocol="postgres"}`, 1},
		{`custos_sessions_active{protocol="ssh"}`, 1},
		{`custos_sessions_total{protocol="postgres"}`, 1},
		{`custos_relayed_bytes_total{direction="to_client",protocol="postgres"}`, 5000},
		{`custos_relayed_bytes_total{direction="to_target",protocol="postgres"}`, 1},
		{`custos_relayed_bytes_total{direction="to_client",protocol="ssh"}`, 3000},
		{`custos_access_requests_total{state="pending"}`, 3},
		{`custos_access_requests_total{state="approved"}`, 2},
		{`custos_access_requests_total{state="denied"}`, 0},
		{`custos_access_requests_pending`, 1},
		{`custos_access_approval_latency_seconds_count`, 2},
		{`custos_grants_active`, 2},
		{`custos_recorder_spool_chunks`, 0},
		{`custos_recorder_spool_bytes`, 0},
		{`custos_recorder_upload_lag_seconds`, 0},
		{`custos_recorder_upload_errors_total`, 0},
		{`custos_vault_request_duration_seconds_count{operation="read"}`, 1},
		{`custos_vault_errors_total{operation="read"}`, 0},
		{`custos_http_request_duration_seconds_count{code="201",route="POST /api/v1/requests"}`, 3},
		{`custos_audit_appends_total{outcome="success"}`, 5},
	}
	var missing []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrapeMetrics(t, b.url)
		missing = missing[:0]
		for _, w := range wants {
			got, ok := sample(body, w.series)
			if !ok || got < w.min {
				missing = append(missing, fmt.Sprintf("%s = %v (present %v), want >= %v", w.series, got, ok, w.min))
			}
		}
		if len(missing) == 0 {
			checkDashboard(t, body)
			// No series is labelled with a raw path: request IDs stay out.
			if strings.Contains(body, pgReq.ID) || strings.Contains(body, "alice") {
				t.Errorf("/metrics carries an identifier or a user name")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("during the sessions:\n%s\nbroker log:\n%s", strings.Join(missing, "\n"), b.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, ch := range []chan string{psqlDone, sshDone} {
		select {
		case o := <-ch:
			if !strings.HasPrefix(o, "<nil>") {
				t.Errorf("session: %s", o)
			}
		case <-ctx.Done():
			t.Fatal("sessions did not end")
		}
	}
	// Once they end the gauges fall back.
	deadline = time.Now().Add(5 * time.Second)
	for {
		body := scrapeMetrics(t, b.url)
		pgLive, _ := sample(body, `custos_sessions_active{protocol="postgres"}`)
		sshLive, _ := sample(body, `custos_sessions_active{protocol="ssh"}`)
		if pgLive == 0 && sshLive == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still counted active after they ended: postgres %v ssh %v", pgLive, sshLive)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The access log has a line per request, by route pattern, and never
	// the connection token.
	logs := b.logs.String()
	if !strings.Contains(logs, "http request") || !strings.Contains(logs, "POST /api/v1/requests") {
		t.Errorf("no access log line for POST /api/v1/requests")
	}
	if strings.Contains(logs, token) {
		t.Error("the connection token appears in the broker log")
	}
}

// checkDashboard fails for a series the Grafana dashboard queries that
// the broker does not expose.
func checkDashboard(t *testing.T, body string) {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana/custos.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/custos.json: %v", err)
	}
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range regexp.MustCompile(`custos_[a-z_]+`).FindAllString(tg.Expr, -1) {
				queried++
				family := name
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if f, ok := strings.CutSuffix(name, suffix); ok && strings.Contains(body, "# TYPE "+f+" histogram") {
						family = f
					}
				}
				if !strings.Contains(body, "# TYPE "+family+" ") {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not expose", p.Title, name)
				}
			}
		}
	}
	if queried < 10 {
		t.Errorf("the dashboard queries only %d custos series", queried)
	}
}

// scrapeMetrics GETs /metrics as a loopback caller.
func scrapeMetrics(t *testing.T, url string) string {
	t.Helper()
	resp, err := readyClient.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// sample returns the value of one series (name and labels exactly as
// exposed) from a text exposition.
func sample(body, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		return v, err == nil
	}
	return 0, false
}
