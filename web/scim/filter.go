package scim

import (
	"fmt"
	"regexp"
	"strings"
)

// term is one comparison of a filter: attr eq value. A term on
// members[value eq "id"] has attr "members.value".
type term struct {
	attr  string // lower-cased
	value string
}

// The filters identity providers send are a few equality tests joined by
// "and" (RFC 7644 §3.4.2.2): Okta `userName eq "x"`, Entra ID
// `userName eq "x"`, `externalId eq "x"`, `displayName eq "x"` and, to
// check a membership, `id eq "g" and members[value eq "u"]`. Anything
// else is refused with invalidFilter rather than half-understood.
var (
	eqTerm     = regexp.MustCompile(`^(?i)([a-z][a-z0-9.]*)\s+eq\s+"((?:[^"\\]|\\.)*)"$`)
	memberTerm = regexp.MustCompile(`^(?i)members\[\s*value\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]$`)
	andSplit   = regexp.MustCompile(`(?i)\s+and\s+`)
)

// parseFilter parses filter; "" is no filter.
func parseFilter(filter string) ([]term, error) {
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return nil, nil
	}
	if len(filter) > 1024 {
		return nil, fmt.Errorf("filter too long")
	}
	var out []term
	for _, part := range splitOutsideQuotes(filter) {
		part = strings.TrimSpace(part)
		if m := memberTerm.FindStringSubmatch(part); m != nil {
			out = append(out, term{attr: "members.value", value: unquote(m[1])})
			continue
		}
		m := eqTerm.FindStringSubmatch(part)
		if m == nil {
			return nil, fmt.Errorf("unsupported filter expression (only eq tests joined by and)")
		}
		out = append(out, term{attr: strings.ToLower(m[1]), value: unquote(m[2])})
	}
	return out, nil
}

// splitOutsideQuotes splits on " and " outside string literals.
func splitOutsideQuotes(s string) []string {
	var parts []string
	start, inQ := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && inQ:
			i++
		case s[i] == '"':
			inQ = !inQ
		case !inQ:
			if loc := andSplit.FindStringIndex(s[i:]); loc != nil && loc[0] == 0 {
				parts = append(parts, s[start:i])
				i += loc[1] - 1
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func unquote(s string) string {
	return strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s)
}
