package sqlstore

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
)

// Each entity is one row: indexed columns for the filters plus a data
// column holding the whole object as JSON. Fields the JSON encoding omits
// on purpose (Token.Hash, Session.Index) have columns of their own.

// GetRequest returns the request with the given ID.
func (t *Tx) GetRequest(id string) (broker.Request, error) {
	var r broker.Request
	err := t.getData("requests", "request", id, &r)
	return r, err
}

// PutRequest inserts or replaces a request.
func (t *Tx) PutRequest(r broker.Request) error {
	if err := t.writable("put request"); err != nil {
		return err
	}
	if r.ID == "" {
		return t.errorf("put request: empty id")
	}
	r.CreatedAt, r.ExpiresAt, r.DecidedAt = utc(r.CreatedAt), utc(r.ExpiresAt), utc(r.DecidedAt)
	r.Approvals, r.Denials = utcDecisions(r.Approvals), utcDecisions(r.Denials)
	data, err := encode(r)
	if err == nil {
		err = t.upsert("requests",
			[]string{"id", "user_name", "target", "state", "created_at", "expires_at", "data"},
			r.ID, r.User, r.Target, string(r.State), fmtTime(r.CreatedAt), fmtTime(r.ExpiresAt), data)
	}
	if err != nil {
		return t.errorf("put request %s: %w", r.ID, err)
	}
	return nil
}

func utcDecisions(in []broker.Decision) []broker.Decision {
	if in == nil {
		return nil
	}
	out := make([]broker.Decision, len(in))
	for i, d := range in {
		d.At = utc(d.At)
		out[i] = d
	}
	return out
}

// ListRequests returns the requests f selects, newest first.
func (t *Tx) ListRequests(f broker.RequestFilter) ([]broker.Request, error) {
	var w filter
	w.eq("user_name", f.User)
	w.eq("target", f.Target)
	w.in("state", stringsOf(f.States))
	w.time("expires_at", "<", f.ExpiresBefore)
	q := "SELECT data FROM requests" + w.where() + " ORDER BY created_at DESC, id DESC" + w.limit(f.Limit)
	return listData[broker.Request](t, "requests", q, w.args)
}

// GetGrant returns the grant with the given ID.
func (t *Tx) GetGrant(id string) (broker.Grant, error) {
	var g broker.Grant
	err := t.getData("grants", "grant", id, &g)
	return g, err
}

// PutGrant inserts or replaces a grant.
func (t *Tx) PutGrant(g broker.Grant) error {
	if err := t.writable("put grant"); err != nil {
		return err
	}
	if g.ID == "" {
		return t.errorf("put grant: empty id")
	}
	g.StartsAt, g.EndsAt, g.RevokedAt = utc(g.StartsAt), utc(g.EndsAt), utc(g.RevokedAt)
	data, err := encode(g)
	if err == nil {
		err = t.upsert("grants",
			[]string{"id", "request_id", "user_name", "target", "role", "state", "starts_at", "ends_at", "effective_end", "data"},
			g.ID, g.RequestID, g.User, g.Target, g.Role, string(g.State),
			fmtTime(g.StartsAt), fmtTime(g.EndsAt), fmtTime(g.EffectiveEnd()), data)
	}
	if err != nil {
		return t.errorf("put grant %s: %w", g.ID, err)
	}
	return nil
}

// ListGrants returns the grants f selects, newest StartsAt first.
func (t *Tx) ListGrants(f broker.GrantFilter) ([]broker.Grant, error) {
	var w filter
	w.eq("user_name", f.User)
	w.eq("target", f.Target)
	w.eq("role", f.Role)
	w.eq("request_id", f.RequestID)
	w.in("state", stringsOf(f.States))
	w.time("ends_at", "<", f.EndsBefore)
	w.time("starts_at", "<=", f.ActiveAt)
	w.time("effective_end", ">", f.ActiveAt)
	q := "SELECT data FROM grants" + w.where() + " ORDER BY starts_at DESC, id DESC" + w.limit(f.Limit)
	return listData[broker.Grant](t, "grants", q, w.args)
}

// GetToken returns the token with the given ID.
func (t *Tx) GetToken(id string) (broker.Token, error) {
	return t.getToken("id", id, "token "+id)
}

// GetTokenByHash returns the token whose secret hashes to hash.
func (t *Tx) GetTokenByHash(hash string) (broker.Token, error) {
	// The hash is not secret, but it is not worth printing either.
	return t.getToken("hash", hash, "token by hash")
}

func (t *Tx) getToken(col, v, what string) (broker.Token, error) {
	var tok broker.Token
	var hash, data string
	if err := t.getOne("SELECT hash, data FROM tokens WHERE "+col+" = $1", []any{v}, &hash, &data); err != nil {
		return tok, t.errorf("get %s: %w", what, err)
	}
	if err := json.Unmarshal([]byte(data), &tok); err != nil {
		return tok, t.errorf("get %s: decode: %w", what, err)
	}
	tok.Hash = hash
	return tok, nil
}

// PutToken inserts or replaces a token. Two tokens with the same hash are
// a conflict (broker.ErrConflict).
func (t *Tx) PutToken(tok broker.Token) error {
	if err := t.writable("put token"); err != nil {
		return err
	}
	if tok.ID == "" || tok.Hash == "" {
		return t.errorf("put token: empty id or hash")
	}
	tok.CreatedAt, tok.ExpiresAt = utc(tok.CreatedAt), utc(tok.ExpiresAt)
	data, err := encode(tok)
	if err == nil {
		err = t.upsert("tokens",
			[]string{"id", "hash", "user_name", "kind", "target", "created_at", "expires_at", "data"},
			tok.ID, tok.Hash, tok.User, tok.Kind, tok.Target, fmtTime(tok.CreatedAt), fmtTime(tok.ExpiresAt), data)
	}
	if err != nil {
		return t.errorf("put token %s: %w", tok.ID, err)
	}
	return nil
}

// ListTokens returns the user's tokens, newest first.
func (t *Tx) ListTokens(user string) ([]broker.Token, error) {
	var out []broker.Token
	err := t.each("SELECT hash, data FROM tokens WHERE user_name = $1 ORDER BY created_at DESC, id DESC",
		[]any{user}, func(r Rows) error {
			var hash, data string
			if err := r.Scan(&hash, &data); err != nil {
				return err
			}
			var tok broker.Token
			if err := json.Unmarshal([]byte(data), &tok); err != nil {
				return err
			}
			tok.Hash = hash
			out = append(out, tok)
			return nil
		})
	if err != nil {
		return nil, t.errorf("list tokens: %w", err)
	}
	return out, nil
}

// ListTokenUsers returns the distinct users holding tokens, sorted.
func (t *Tx) ListTokenUsers() ([]string, error) {
	var out []string
	err := t.each("SELECT DISTINCT user_name FROM tokens ORDER BY user_name", nil, func(r Rows) error {
		var u string
		if err := r.Scan(&u); err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	if err != nil {
		return nil, t.errorf("list token users: %w", err)
	}
	return out, nil
}

// DeleteToken removes a token; deleting a missing token is ErrNotFound.
func (t *Tx) DeleteToken(id string) error {
	if err := t.writable("delete token"); err != nil {
		return err
	}
	n, err := t.c.Exec(t.ctx, "DELETE FROM tokens WHERE id = $1", id)
	if err == nil && n == 0 {
		err = broker.ErrNotFound
	}
	if err != nil {
		return t.errorf("delete token %s: %w", id, err)
	}
	return nil
}

// DeleteExpiredTokens deletes the tokens whose expiry is before the given
// instant. Stored times are fixed-width UTC text, so the text comparison
// is the time comparison (and uses the tokens_expires index).
func (t *Tx) DeleteExpiredTokens(before time.Time) (int, error) {
	if err := t.writable("delete expired tokens"); err != nil {
		return 0, err
	}
	n, err := t.c.Exec(t.ctx, "DELETE FROM tokens WHERE expires_at < $1", fmtTime(before))
	if err != nil {
		return 0, t.errorf("delete expired tokens: %w", err)
	}
	return int(n), nil
}

// GetSession returns the session with the given ID.
func (t *Tx) GetSession(id string) (broker.Session, error) {
	var index, data string
	err := t.getOne("SELECT index_text, data FROM sessions WHERE id = $1", []any{id}, &index, &data)
	var s broker.Session
	if err == nil {
		s, err = decodeSession(index, data)
	}
	if err != nil {
		return broker.Session{}, t.errorf("get session %s: %w", id, err)
	}
	return s, nil
}

// PutSession inserts or replaces a session.
func (t *Tx) PutSession(s broker.Session) error {
	if err := t.writable("put session"); err != nil {
		return err
	}
	if s.ID == "" {
		return t.errorf("put session: empty id")
	}
	s.StartedAt, s.EndedAt = utc(s.StartedAt), utc(s.EndedAt)
	data, err := encode(s)
	if err == nil {
		err = t.upsert("sessions",
			[]string{"id", "grant_id", "user_name", "target", "role", "protocol", "state", "started_at",
				"index_text", "search_text", "data"},
			s.ID, s.GrantID, s.User, s.Target, s.Role, s.Protocol, string(s.State), fmtTime(s.StartedAt),
			s.Index, strings.ToLower(s.Index), data)
	}
	if err != nil {
		return t.errorf("put session %s: %w", s.ID, err)
	}
	return nil
}

// ListSessions returns the sessions f selects, newest first.
//
// A content search (f.Contains) on SQLite has two ways to run. A common
// string is found soonest by reading the newest sessions until the page
// is full; a rare one by the sessions_fts trigram index, which reads only
// the sessions that contain it but must read all of them before sorting.
// So a page-limited search first reads the newest sessionWindow sessions
// the other filters select (newestSessions); when they fill the page, or
// are all there is, that is the answer, and only otherwise does the
// search go through the index. Both give the same sessions.
func (t *Tx) ListSessions(f broker.SessionFilter) ([]broker.Session, error) {
	text := strings.ToLower(f.Contains)
	if t.d.SessionFTS && f.Limit > 0 && len([]rune(text)) >= 3 {
		out, done, err := t.newestSessions(f, text)
		if err != nil || done {
			return out, err
		}
	}
	var w filter
	sessionFilter(&w, f)
	if t.d.SessionFTS {
		w.containsFTS(text)
	} else {
		w.contains("search_text", text)
	}
	q := "SELECT index_text, data FROM sessions" + w.where() + " ORDER BY started_at DESC, id DESC" + w.limit(f.Limit)
	var out []broker.Session
	err := t.each(q, w.args, func(r Rows) error {
		var index, data string
		if err := r.Scan(&index, &data); err != nil {
			return err
		}
		s, err := decodeSession(index, data)
		out = append(out, s)
		return err
	})
	if err != nil {
		return nil, t.errorf("list sessions: %w", err)
	}
	return out, nil
}

// sessionWindow is how many of the newest sessions a content search
// reads before it turns to the trigram index.
const sessionWindow = 2000

// newestSessions reads the newest sessionWindow sessions f selects apart
// from its text, newest first, and keeps those whose text contains text.
// done reports that they are the whole answer: the page filled, or the
// window held every session the other filters select.
func (t *Tx) newestSessions(f broker.SessionFilter, text string) (out []broker.Session, done bool, err error) {
	var w filter
	hit := "search_text LIKE " + w.arg(likePattern(text)) + ` ESCAPE '\'`
	sessionFilter(&w, f)
	q := "SELECT CASE WHEN " + hit + " THEN index_text END, CASE WHEN " + hit + " THEN data END FROM sessions" +
		w.where() + " ORDER BY started_at DESC, id DESC LIMIT " + w.arg(int64(sessionWindow))
	n := 0
	err = t.each(q, w.args, func(r Rows) error {
		if len(out) == f.Limit {
			return errPageFull
		}
		n++
		var index, data *string
		if err := r.Scan(&index, &data); err != nil {
			return err
		}
		if data == nil {
			return nil
		}
		s, err := decodeSession(*index, *data)
		out = append(out, s)
		return err
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return nil, false, t.errorf("list sessions: %w", err)
	}
	return out, len(out) == f.Limit || n < sessionWindow, nil
}

var errPageFull = errors.New("page full")

// sessionFilter adds f's conditions other than its text to w.
func sessionFilter(w *filter, f broker.SessionFilter) {
	w.eq("user_name", f.User)
	w.eq("target", f.Target)
	w.eq("protocol", f.Protocol)
	w.eq("grant_id", f.GrantID)
	w.in("state", stringsOf(f.States))
	w.time("started_at", ">=", f.Since)
	w.time("started_at", "<", f.Until)
}

// decodeSession is a session from its row: the JSON data column, and
// the index text the JSON encoding leaves out.
func decodeSession(index, data string) (broker.Session, error) {
	var s broker.Session
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return s, err
	}
	s.Index = index
	return s, nil
}
