//go:build soak

package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// soakSession is a row of GET /api/v1/sessions.
type soakSession struct {
	ID         string    `json:"id"`
	GrantID    string    `json:"grant_id"`
	User       string    `json:"user"`
	Protocol   string    `json:"protocol"`
	State      string    `json:"state"`
	StartedAt  time.Time `json:"started_at"`
	Bytes      int64     `json:"bytes"`
	Statements int64     `json:"statements"`
}

// api calls the broker's API as sam (a security admin).
type soakAPI struct {
	base, token string
	http        *http.Client
}

func (s *soak) api() *soakAPI {
	raw, err := os.ReadFile(filepath.Join(s.b.homes["sam"], "token.json"))
	if err != nil {
		s.t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		s.t.Fatal(err)
	}
	return &soakAPI{base: s.b.url, token: tok.Token, http: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 8}}}
}

func (a *soakAPI) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %.300s", path, resp.StatusCode, body)
	}
	return body, nil
}

// sessions lists every session of user.
func (a *soakAPI) sessions(ctx context.Context, user string) ([]soakSession, error) {
	body, err := a.get(ctx, "/api/v1/sessions?limit=5000&user="+url.QueryEscape(user))
	if err != nil {
		return nil, err
	}
	var ss []soakSession
	if err := json.Unmarshal(body, &ss); err != nil {
		return nil, err
	}
	if len(ss) == 5000 {
		return nil, fmt.Errorf("sessions of %s: 5000 rows, the listing's limit; shorten the soak", user)
	}
	return ss, nil
}

// waitQuiet waits until no session is live and the recorder's spool is
// empty (every chunk uploaded). A backlog may take a while to drain; it
// fails only when the spool stops shrinking for two minutes.
func (s *soak) waitQuiet(ctx context.Context) {
	last, progress := -1.0, time.Now()
	for {
		body := scrapeMetrics(s.t, s.b.url)
		live := 0.0
		for _, p := range []string{"postgres", "ssh"} {
			v, _ := sample(body, `custos_sessions_active{protocol="`+p+`"}`)
			live += v
		}
		spool, _ := sample(body, "custos_recorder_spool_chunks")
		if live == 0 && spool == 0 {
			return
		}
		if last < 0 || spool+live < last {
			last, progress = spool+live, time.Now()
		}
		if time.Since(progress) > 2*time.Minute || ctx.Err() != nil {
			s.t.Fatalf("still %v sessions live and %v chunks spooled, no progress for two minutes", live, spool)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// soakResult is what the recordings say, held against the clients.
type soakResult struct {
	sshSessions, pgSessions, terminated int
	verified, notVerified               int
	sshMatched, sshChecked              int
	scpMatched, scpChecked              int
	pgMatched, pgChecked                int
	pgTx, pgStatements                  int64
	sshRuns, sshRefused, sshCutEarly    int
	mismatches                          []string
	took                                time.Duration // listing, verifying and exporting
}

func (r *soakResult) mismatch(format string, args ...any) {
	if len(r.mismatches) < 100 {
		r.mismatches = append(r.mismatches, fmt.Sprintf(format, args...))
	}
}

// check lists every session, verifies every recording and compares each
// session with the client that made it.
func (s *soak) check(ctx context.Context) *soakResult {
	s.waitQuiet(ctx)
	api := s.api()
	defer api.http.CloseIdleConnections()
	res := &soakResult{}
	bySession := map[string][]soakSession{}
	var all []soakSession
	for _, u := range append(append([]string{}, s.pgUsers...), s.sshUsers...) {
		ss, err := api.sessions(ctx, u)
		if err != nil {
			s.t.Fatal(err)
		}
		bySession[u] = ss
		all = append(all, ss...)
	}
	for _, x := range all {
		switch x.Protocol {
		case "ssh":
			res.sshSessions++
		case "postgres":
			res.pgSessions++
		}
		if x.State == "terminated" {
			res.terminated++
		}
	}

	// Every recording verifies: chain, signature, retention.
	var mu sync.Mutex
	exports := map[string]*sshRecord{}
	work := make(chan soakSession)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for x := range work {
				ok, detail := api.verify(ctx, x.ID)
				var rec *sshRecord
				var err error
				if x.Protocol == "ssh" {
					rec, err = api.export(ctx, x.ID)
				}
				mu.Lock()
				if ok {
					res.verified++
				} else {
					res.notVerified++
					res.mismatch("session %s (%s, %s, started %s, %d statements, %d bytes): recording does not verify: %s\nbroker log:\n%s",
						x.ID, x.User, x.State, x.StartedAt.Format(time.RFC3339Nano), x.Statements, x.Bytes, detail, s.logLines(x.ID))
				}
				if err != nil {
					res.mismatch("session %s: export: %v", x.ID, err)
				} else if rec != nil {
					exports[x.ID] = rec
				}
				mu.Unlock()
			}
		}()
	}
	for _, x := range all {
		work <- x
	}
	close(work)
	wg.Wait()

	s.mu.Lock()
	pgRuns, sshRuns := slices.Clone(s.pgRuns), slices.Clone(s.sshRuns)
	s.mu.Unlock()
	for _, u := range s.pgUsers {
		s.matchPG(res, u, bySession[u], pgRuns)
	}
	for _, u := range s.sshUsers {
		s.matchSSH(res, u, bySession[u], exports, sshRuns)
	}
	return res
}

// verify verifies a recording, again while the broker says it is still
// storing it (for up to three minutes).
func (a *soakAPI) verify(ctx context.Context, id string) (bool, string) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		body, err := a.get(ctx, "/api/v1/sessions/"+id+"/verify")
		if err != nil {
			return false, err.Error()
		}
		var rep struct {
			Intact  bool   `json:"intact"`
			Verdict string `json:"verdict"`
			State   string `json:"state"`
		}
		if err := json.Unmarshal(body, &rep); err != nil {
			return false, err.Error()
		}
		if rep.State != "pending" || time.Now().After(deadline) {
			return rep.Intact, rep.Verdict
		}
		time.Sleep(time.Second)
	}
}

// sshRecord is what an SSH session's recording says the client did.
type sshRecord struct {
	in, out int64 // input; output and stderr data bytes
	markers []string
	// env is the run's marker from its LC_CUSTOS_SOAK env request.
	env    string
	files  []fileEvent
	warmup bool
}

type fileEvent struct {
	op, path, sum, outcome string
	n                      int64
}

var markerRE = regexp.MustCompile(`cs\d{3}x\d{4}`)

// export reads a session's events (JSONL export) and sums its data.
func (a *soakAPI) export(ctx context.Context, id string) (*sshRecord, error) {
	body, err := a.get(ctx, "/api/v1/sessions/"+id+"/export?format=jsonl")
	if err != nil {
		return nil, err
	}
	rec := &sshRecord{}
	var input strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 16<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		var e struct {
			Kind, Op, Text, Name string
			Data                 *string
			DataB64              string `json:"data_b64"`
			Args                 []string
			N                    int64
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, err
		}
		var data []byte
		if e.Data != nil {
			data = []byte(*e.Data)
		} else if e.DataB64 != "" {
			data, _ = base64.StdEncoding.DecodeString(e.DataB64)
		}
		switch e.Kind {
		case "input":
			rec.in += int64(len(data))
			input.Write(data)
		case "output", "stderr":
			rec.out += int64(len(data))
		case "ssh_request":
			if e.Op == "env" && e.Name == soakEnv && rec.env == "" {
				rec.env = e.Text
			}
			if e.Op == "exec" {
				rec.markers = append(rec.markers, markerRE.FindAllString(e.Text, -1)...)
				rec.warmup = rec.warmup || strings.Contains(e.Text, "warmup")
			}
		case "file":
			f := fileEvent{op: e.Op, path: e.Text, n: e.N, outcome: e.Name}
			for _, a := range e.Args {
				if v, ok := strings.CutPrefix(a, "sha256="); ok {
					f.sum = v
				}
			}
			rec.files = append(rec.files, f)
		}
	}
	rec.markers = append(rec.markers, markerRE.FindAllString(input.String(), -1)...)
	return rec, sc.Err()
}

// matchSSH pairs each SSH session of user with the run whose marker it
// carries and compares their bytes; see docs/development.md (make soak)
// for what "match" means.
func (s *soak) matchSSH(res *soakResult, user string, sessions []soakSession, exports map[string]*sshRecord, runs []soakSSHRun) {
	byKey := map[string]soakSSHRun{}
	for _, r := range runs {
		if r.user != user {
			continue
		}
		res.sshRuns++
		byKey[r.marker] = r
	}
	seen := map[string]bool{}
	unmarked := 0
	for _, x := range sessions {
		rec := exports[x.ID]
		if rec == nil {
			continue // export failed: already a mismatch
		}
		if rec.warmup {
			continue
		}
		key := rec.env
		if key == "" && x.State == "terminated" && rec.in == 0 && rec.out == 0 && len(rec.files) == 0 {
			// Cut by a revocation before the client's first channel
			// request, so before its marker: paired below with a run
			// that got nothing.
			unmarked++
			continue
		}
		run, ok := byKey[key]
		if key == "" || !ok {
			res.mismatch("ssh session %s (%s, %s, %d bytes): no client run carries its marker %q", x.ID, user, x.State, x.Bytes, key)
			continue
		}
		if seen[key] {
			res.mismatch("ssh session %s: a second session for run %s", x.ID, key)
			continue
		}
		seen[key] = true
		cut := x.State == "terminated" || run.exit != 0
		switch run.kind {
		case "shell", "exec":
			res.sshChecked++
			exact := rec.in == run.sent && rec.out == run.received && rec.in+rec.out == x.Bytes
			// A session a revocation ended: everything the client
			// received is in the recording, and nothing it did not send.
			bounded := rec.out >= run.received && rec.in <= run.sent
			if exact || cut && bounded {
				res.sshMatched++
			} else {
				res.mismatch("ssh session %s (%s %s, %s, exit %d): recorded in %d out %d (index %d), client sent %d received %d\nbroker log:\n%s",
					x.ID, run.kind, run.marker, x.State, run.exit, rec.in, rec.out, x.Bytes, run.sent, run.received, s.logLines(x.ID))
			}
		case "up", "down":
			res.scpChecked++
			op := map[string]string{"up": "write", "down": "read"}[run.kind]
			var f *fileEvent
			for i := range rec.files {
				if rec.files[i].op == op && strings.Contains(rec.files[i].path, run.file) {
					f = &rec.files[i]
				}
			}
			switch {
			case f == nil && cut:
				res.scpMatched++ // cut before the file was opened
			case f == nil:
				res.mismatch("scp session %s (%s %s): no %s file event", x.ID, run.kind, run.marker, op)
			case !cut && f.n == run.size && (f.sum == "" || f.sum == run.sum):
				// Under the default file_contents: full the contents are
				// in the record and the event has no digest.
				res.scpMatched++
			case cut && f.n <= run.size:
				res.scpMatched++
			default:
				res.mismatch("scp session %s (%s %s, %s, exit %d): recorded %d bytes sha256 %.12s, client %d bytes sha256 %.12s",
					x.ID, run.kind, run.marker, x.State, run.exit, f.n, f.sum, run.size, run.sum)
			}
		}
	}
	defer func() {
		if unmarked > 0 {
			res.mismatch("ssh lane %s: %d sessions cut before their marker and no client run left that got nothing", user, unmarked)
		}
	}()
	for key, r := range byKey {
		if seen[key] {
			continue
		}
		// No session: fine only when the broker refused the connection
		// (the lane's grant was revoked) and the client got nothing. An
		// upload's size is the local file's, not what it sent: one that
		// failed without a session carrying its marker moved nothing.
		if r.exit != 0 && r.received == 0 && (r.size == 0 || r.kind == "up") || r.kind == "down" && r.exit != 0 && r.size == 0 {
			if unmarked > 0 {
				unmarked-- // its session was cut before the marker
				res.sshCutEarly++
			} else {
				res.sshRefused++
			}
			continue
		}
		res.mismatch("ssh run %s of %s (exit %d, received %d, %s): no recorded session", key, user, r.exit, r.received, r.errText)
	}
}

// matchPG pairs each PostgreSQL session of a lane with a pgbench client.
// A client that ended normally made exactly as many statements as it
// logged transactions (the script is one SELECT); a client of a run a
// revocation cut may have sent one more that never completed; a pgbench
// process also opens one setup connection that runs nothing.
func (s *soak) matchPG(res *soakResult, user string, sessions []soakSession, runs []soakPGRun) {
	type want struct {
		lo, hi   int64
		optional bool
	}
	var wants []want
	for _, r := range runs {
		if r.user != user {
			continue
		}
		slack := int64(0)
		if r.failed {
			slack = 1
		}
		wants = append(wants, want{0, slack, r.failed}) // setup connection
		for _, n := range r.tx {
			res.pgTx += n
			wants = append(wants, want{n, n + slack, r.failed && n == 0})
		}
	}
	var got []int64
	for _, x := range sessions {
		if x.StartedAt.Before(s.loadStart) {
			continue // warm-up
		}
		got = append(got, x.Statements)
		res.pgStatements += x.Statements
	}
	res.pgChecked += len(got)
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	sort.SliceStable(wants, func(i, j int) bool { return wants[i].hi < wants[j].hi })
	// Clients that must have a session first, then those that may (their
	// connection may have been refused), each taking the smallest free
	// session in its range.
	used := make([]bool, len(got))
	matched := 0
	for _, optional := range []bool{false, true} {
		for _, w := range wants {
			if w.optional != optional {
				continue
			}
			i := sort.Search(len(got), func(i int) bool { return got[i] >= w.lo })
			for i < len(got) && used[i] {
				i++
			}
			if i < len(got) && got[i] <= w.hi {
				used[i] = true
				matched++
				continue
			}
			if !w.optional {
				res.mismatch("pg lane %s: a pgbench client with %d..%d transactions has no session with that many statements", user, w.lo, w.hi)
			}
		}
	}
	for i, u := range used {
		if !u {
			res.mismatch("pg lane %s: a session with %d statements matches no pgbench client", user, got[i])
		}
	}
	res.pgMatched += matched
}

// logLines are the broker's log lines that mention id.
func (s *soak) logLines(id string) string {
	var out []string
	for _, l := range strings.Split(s.b.logs.String(), "\n") {
		if strings.Contains(l, id) && len(out) < 8 {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
