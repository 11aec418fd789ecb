package web_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/web"
)

type errLog struct{ msgs []string }

func (l *errLog) Error(msg string, args ...any) {
	l.msgs = append(l.msgs, fmt.Sprint(append([]any{msg}, args...)...))
}

// WriteFailure: refusals keep their kind; a store that could not be
// reached is a 503 the CLI shows as unavailable (exit 5), without the
// internal text; anything else is a 500 without its text.
func TestWriteFailure(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"refusal", broker.Refuse(broker.KindConflict, "already_decided", "request already decided"), 409, "already_decided"},
		{"store down", fmt.Errorf("access: approve: %w", fmt.Errorf("%w: postgres store: begin: dial tcp 127.0.0.1:5432: connection refused", broker.ErrStoreUnavailable)), 503, "store_unavailable"},
		{"other", errors.New("postgres store: syntax error at 127.0.0.1"), 500, "internal"},
	} {
		w := httptest.NewRecorder()
		log := &errLog{}
		web.WriteFailure(w, log, c.err)
		var body web.ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if w.Code != c.status || body.Error.Code != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, w.Code, body.Error.Code, c.status, c.code)
		}
		if strings.Contains(w.Body.String(), "127.0.0.1") {
			t.Errorf("%s: internal text in the answer: %s", c.name, w.Body)
		}
		if c.status >= 500 && len(log.msgs) == 0 {
			t.Errorf("%s: cause not logged", c.name)
		}
	}
}
