package recorder

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/custos-pam/custos/recorder/event"
)

// bindingProblem says why a located manifest is not the recording of
// session id, as a check name and a detail, or returns "", "" when it is.
// A manifest's signature proves the broker wrote it, not for which
// session: a signed manifest copied under another session's key verifies.
// So the manifest and its header must name id, the key it was read from
// must lie under the manifest's own prefix, and when the session index
// recorded the audited manifest hash, the file must hash to it. Open and
// Verify both refuse a manifest that fails.
func (loc *located) bindingProblem(id string) (check, detail string) {
	m := &loc.signed.Manifest
	var h event.Header
	switch {
	case m.SessionID != id:
		return "session", fmt.Sprintf("the manifest at %s is the recording of session %s, not %s (copied from another recording)",
			loc.key, m.SessionID, id)
	case json.Unmarshal(m.Header, &h) != nil:
		return "header", "the manifest's session header is unreadable"
	case h.SessionID != id:
		return "header", fmt.Sprintf("the manifest's session header names session %s, not %s", h.SessionID, id)
	case m.Prefix == "" || !strings.HasPrefix(loc.key, m.Prefix) || !strings.HasSuffix(m.Prefix, "/"+id+"/"):
		return "prefix", fmt.Sprintf("the manifest's prefix %s does not hold %s", m.Prefix, loc.key)
	case loc.expected != "" && loc.signed.Hash != loc.expected:
		return "manifest hash", fmt.Sprintf("%s, but the audit recorded %s", loc.signed.Hash, loc.expected)
	}
	return "", ""
}
