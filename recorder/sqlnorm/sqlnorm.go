// Package sqlnorm replaces the literal values of PostgreSQL statements
// with numbered placeholders, as pg_stat_statements normalises them, so
// that statement text can be indexed and searched without the values it
// carried (passwords in ALTER ROLE, patient identifiers in WHERE clauses).
//
// It is a lexer, not a parser: it knows PostgreSQL's quoting rules
// (standard, escape, bit, hex, national and Unicode strings, dollar
// quoting, quoted identifiers, nested block comments) so that no literal
// survives however the statement is written. Comments are dropped: they
// are free text and may carry anything. An unterminated literal or
// comment swallows the rest of the text.
package sqlnorm

import (
	"strconv"
	"strings"
)

// Normalize returns sql with every string, bit, numeric and dollar-quoted
// literal replaced by a placeholder $N (numbered after the highest
// parameter the statement already uses) and every comment removed.
// Identifiers, keywords, operators and existing parameters are kept.
func Normalize(sql string) string {
	return string(AppendNormalized(make([]byte, 0, len(sql)), sql))
}

// AppendNormalized appends the normalised form of sql to dst and returns
// the extended buffer; it allocates only to grow dst.
func AppendNormalized(dst []byte, sql string) []byte {
	n := maxParam(sql)
	start := len(dst)
	b := dst
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == '-' && at(sql, i+1) == '-':
			j := strings.IndexByte(sql[i:], '\n')
			if j < 0 {
				for len(b) > start && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
					b = b[:len(b)-1]
				}
				return b
			}
			i += j
		case c == '/' && at(sql, i+1) == '*':
			i = skipBlockComment(sql, i)
			b = append(b, ' ')
		case c == '\'':
			i = skipString(sql, i, false)
			n++
			b = appendPlaceholder(b, start, n)
		case (c == 'e' || c == 'E') && at(sql, i+1) == '\'' && !identBefore(sql, i):
			i = skipString(sql, i+1, true)
			n++
			b = appendPlaceholder(b, start, n)
		case (c == 'b' || c == 'B' || c == 'x' || c == 'X' || c == 'n' || c == 'N') && at(sql, i+1) == '\'' && !identBefore(sql, i):
			i = skipString(sql, i+1, false)
			n++
			b = appendPlaceholder(b, start, n)
		case (c == 'u' || c == 'U') && at(sql, i+1) == '&' && at(sql, i+2) == '\'' && !identBefore(sql, i):
			i = skipString(sql, i+2, false)
			n++
			b = appendPlaceholder(b, start, n)
		case c == '"':
			j, ok := skipQuotedIdent(sql, i)
			if !ok {
				// An unterminated identifier may hold anything.
				n++
				b = appendPlaceholder(b, start, n)
				return b
			}
			b = append(b, sql[i:j]...)
			i = j
		case c == '$':
			if tag, ok := dollarTag(sql, i); ok && !identBefore(sql, i) {
				i = skipDollar(sql, i, tag)
				n++
				b = appendPlaceholder(b, start, n)
				continue
			}
			j := i + 1
			for j < len(sql) && isDigit(sql[j]) {
				j++
			}
			b = append(b, sql[i:j]...)
			i = j
		case isDigit(c) && !identBefore(sql, i), c == '.' && isDigit(at(sql, i+1)) && !identBefore(sql, i):
			i = skipNumber(sql, i)
			n++
			b = appendPlaceholder(b, start, n)
		case isIdentStart(c):
			j := i + 1
			for j < len(sql) && isIdentChar(sql[j]) {
				j++
			}
			b = append(b, sql[i:j]...)
			i = j
		default:
			b = append(b, c)
			i++
		}
	}
	return b
}

// appendPlaceholder appends $n, a token of its own after what b[start:]
// already holds.
func appendPlaceholder(b []byte, start, n int) []byte {
	if len(b) > start && isIdentChar(b[len(b)-1]) {
		b = append(b, ' ')
	}
	b = append(b, '$')
	return strconv.AppendInt(b, int64(n), 10)
}

// maxParam returns the highest $N parameter in sql. It does not skip
// literals: a $N inside one only raises the numbering.
func maxParam(sql string) int {
	hi := 0
	for i := 0; i < len(sql); i++ {
		if sql[i] != '$' || identBefore(sql, i) {
			continue
		}
		j := i + 1
		for j < len(sql) && isDigit(sql[j]) && j-i < 8 {
			j++
		}
		if j > i+1 {
			if v, err := strconv.Atoi(sql[i+1 : j]); err == nil && v > hi {
				hi = v
			}
		}
	}
	return hi
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isIdentStart(c byte) bool { return c == '_' || c >= 0x80 || (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isIdentChar(c byte) bool  { return isIdentStart(c) || isDigit(c) || c == '$' }

// identBefore reports whether the byte before i continues an identifier or
// number, so that i does not start a new token.
func identBefore(s string, i int) bool { return i > 0 && isIdentChar(s[i-1]) }

// skipString returns the index after the quoted string opening at q.
// Doubled quotes stay inside; with backslashes, \x escapes the next byte.
// Adjacent strings separated by whitespace containing a newline continue
// the same literal, as PostgreSQL's lexer has them.
func skipString(s string, q int, backslashes bool) int {
	i := q + 1
	for i < len(s) {
		switch c := s[i]; {
		case backslashes && c == '\\':
			i += 2
		case c == '\'':
			if at(s, i+1) == '\'' {
				i += 2
				continue
			}
			if j, ok := continuation(s, i+1); ok {
				i = j + 1
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(s)
}

// continuation reports whether whitespace with a newline and then another
// quote follow at i, returning the quote's index.
func continuation(s string, i int) (int, bool) {
	newline := false
	for ; i < len(s); i++ {
		switch s[i] {
		case '\n', '\r':
			newline = true
		case ' ', '\t', '\f':
		case '\'':
			return i, newline
		default:
			return 0, false
		}
	}
	return 0, false
}

// skipQuotedIdent returns the index after the quoted identifier opening at
// q, and false when it is not closed.
func skipQuotedIdent(s string, q int) (int, bool) {
	for i := q + 1; i < len(s); i++ {
		if s[i] == '"' {
			if at(s, i+1) == '"' {
				i++
				continue
			}
			return i + 1, true
		}
	}
	return len(s), false
}

func skipBlockComment(s string, i int) int {
	depth := 0
	for i < len(s) {
		switch {
		case s[i] == '/' && at(s, i+1) == '*':
			depth++
			i += 2
		case s[i] == '*' && at(s, i+1) == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// dollarTag returns the opening delimiter ($$ or $tag$) at i.
func dollarTag(s string, i int) (string, bool) {
	j := i + 1
	if j < len(s) && isDigit(s[j]) {
		return "", false
	}
	for j < len(s) && isIdentChar(s[j]) && s[j] != '$' {
		j++
	}
	if j < len(s) && s[j] == '$' {
		return s[i : j+1], true
	}
	return "", false
}

func skipDollar(s string, i int, tag string) int {
	body := i + len(tag)
	j := strings.Index(s[body:], tag)
	if j < 0 {
		return len(s)
	}
	return body + j + len(tag)
}

func skipNumber(s string, i int) int {
	if s[i] == '0' && (at(s, i+1)|0x20 == 'x' || at(s, i+1)|0x20 == 'o' || at(s, i+1)|0x20 == 'b') {
		i += 2
		for i < len(s) && (isIdentChar(s[i])) {
			i++
		}
		return i
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '_' || s[i] == '.') {
		i++
	}
	if i < len(s) && s[i]|0x20 == 'e' {
		j := i + 1
		if at(s, j) == '+' || at(s, j) == '-' {
			j++
		}
		if isDigit(at(s, j)) {
			i = j
			for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
				i++
			}
		}
	}
	return i
}
