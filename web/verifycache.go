package web

import (
	"context"
	"sync"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/recorder"
)

// verifyState is a session's verification status as the table shows it:
// intact, failed, pending (a check is queued), live or unavailable.
type verifyState struct {
	Status  string    `json:"status"`
	Verdict string    `json:"verdict,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// verifyCache remembers verification results per session and manifest,
// and verifies sessions nobody has checked yet in the background, one at a
// time, so the session table can show a status on every row without
// holding up the page.
type verifyCache struct {
	mu      sync.Mutex
	results map[string]verifyEntry
	queue   []broker.Session
	queued  map[string]bool
	running bool
}

type verifyEntry struct {
	hash  string
	state verifyState
}

// maxVerifyQueue bounds the sessions waiting for a background check.
const maxVerifyQueue = 256

// maxVerifyResults bounds the results kept. Past it, arbitrary older
// entries go (a forgotten session is simply checked again when shown),
// so a broker that lists sessions for years holds no result per session
// ever recorded.
const maxVerifyResults = 20000

func newVerifyCache() *verifyCache {
	return &verifyCache{results: map[string]verifyEntry{}, queued: map[string]bool{}}
}

// put records a verification result. A recording still being stored is
// not a result: the next view checks again.
func (c *verifyCache) put(s broker.Session, rep *recorder.VerifyReport) {
	if rep.State == "pending" {
		return
	}
	st := verifyState{Status: "intact", Verdict: rep.Verdict, At: time.Now().UTC()}
	if !rep.Intact {
		st.Status = "failed"
	}
	c.mu.Lock()
	if _, ok := c.results[s.ID]; !ok && len(c.results) >= maxVerifyResults {
		for id := range c.results {
			delete(c.results, id)
			if len(c.results) < maxVerifyResults/2 {
				break
			}
		}
	}
	c.results[s.ID] = verifyEntry{hash: s.ManifestHash, state: st}
	c.mu.Unlock()
}

// status returns the known status of a closed session, queuing a
// background check when there is none.
func (c *verifyCache) status(s broker.Session, recs recordings) verifyState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.results[s.ID]; ok && e.hash == s.ManifestHash {
		return e.state
	}
	if !c.queued[s.ID] && len(c.queue) < maxVerifyQueue {
		c.queued[s.ID] = true
		c.queue = append(c.queue, s)
		if !c.running {
			c.running = true
			go c.work(recs)
		}
	}
	return verifyState{Status: "pending"}
}

// work verifies queued sessions until the queue is empty.
func (c *verifyCache) work(recs recordings) {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		s := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		rep, err := recs.Verify(ctx, s.ID)
		cancel()
		c.mu.Lock()
		delete(c.queued, s.ID)
		c.mu.Unlock()
		if err != nil {
			continue // store unreachable: stays unknown, retried on the next view
		}
		c.put(s, rep)
	}
}
