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
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	f.conds = append(f.conds, col+" LIKE "+f.arg("%"+r.Replace(s)+"%")+` ESCAPE '\'`)
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
