package sqlstore

import (
	"strconv"
	"strings"
	"time"
)

// filter builds a WHERE clause with numbered placeholders.
type filter struct {
	conds []string
	args  []any
}

// arg adds a bound value and returns its placeholder.
func (f *filter) arg(v any) string {
	f.args = append(f.args, v)
	return "$" + strconv.Itoa(len(f.args))
}

// eq matches col = v when v is not empty.
func (f *filter) eq(col, v string) {
	if v != "" {
		f.conds = append(f.conds, col+" = "+f.arg(v))
	}
}

// in matches col against any of vals when vals is not empty.
func (f *filter) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	ph := make([]string, len(vals))
	for i, v := range vals {
		ph[i] = f.arg(v)
	}
	f.conds = append(f.conds, col+" IN ("+strings.Join(ph, ", ")+")")
}

// time compares col with t using op when t is not zero.
func (f *filter) time(col, op string, t time.Time) {
	if !t.IsZero() {
		f.conds = append(f.conds, col+" "+op+" "+f.arg(fmtTime(t)))
	}
}

// seqAfter matches col > n when n is positive.
func (f *filter) seqAfter(col string, n int64) {
	if n > 0 {
		f.conds = append(f.conds, col+" > "+f.arg(n))
	}
}

// prefix matches values of col that start with p, case-sensitively in
// both databases (LIKE folds ASCII case in SQLite).
func (f *filter) prefix(col, p string) {
	if p == "" {
		return
	}
	n := f.arg(int64(len([]rune(p))))
	f.conds = append(f.conds, "substr("+col+", 1, "+n+") = "+f.arg(p))
}

// contains matches values of col that contain s. Callers lowercase both.
func (f *filter) contains(col, s string) {
	if s == "" {
		return
	}
	f.conds = append(f.conds, col+" LIKE "+f.arg(likePattern(s))+` ESCAPE '\'`)
}

// likePattern is a LIKE pattern (escape character \) matching values that
// contain s, every character of s taken literally.
func likePattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// containsFTS matches the sessions whose search_text contains s through
// the sessions_fts trigram index (SQLite). Callers lowercase s. GLOB is
// case-sensitive, as the index is, and takes s literally once its three
// wildcard characters are bracketed. A string shorter than a trigram
// cannot use the index, so it falls back to contains.
func (f *filter) containsFTS(s string) {
	if len([]rune(s)) < 3 {
		f.contains("search_text", s)
		return
	}
	r := strings.NewReplacer(`*`, `[*]`, `?`, `[?]`, `[`, `[[]`)
	f.conds = append(f.conds, "rowid IN (SELECT rowid FROM sessions_fts WHERE search_text GLOB "+f.arg("*"+r.Replace(s)+"*")+")")
}

// where returns the WHERE clause, or "" when nothing is filtered.
func (f *filter) where() string {
	if len(f.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(f.conds, " AND ")
}

// limit returns a LIMIT clause for n > 0.
func (f *filter) limit(n int) string {
	if n <= 0 {
		return ""
	}
	return " LIMIT " + f.arg(int64(n))
}

func stringsOf[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}
