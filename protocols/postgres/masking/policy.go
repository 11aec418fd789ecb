// Package masking is the PostgreSQL proxy's data-dictionary policy: it
// classifies result columns by the data dictionary's column and value
// patterns and rewrites DataRow values by a role's masking rules (pass,
// mask, hash, null). It is pure: the proxy resolves columns against the
// catalog and feeds it RowDescription fields and DataRow bodies.
package masking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"path"
	"regexp"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/custos-pam/custos/broker/config"
)

// Action is what happens to a value.
type Action uint8

const (
	// Mask keeps the classification's prefix and the value's punctuation
	// and replaces every later letter and digit with '*'.
	Mask Action = iota
	// Pass relays the value unchanged.
	Pass
	// Hash replaces the value with a keyed HMAC ("h:" and 24 hex digits),
	// equal for equal values under one key.
	Hash
	// Null replaces the value with NULL.
	Null
)

func (a Action) String() string {
	switch a {
	case Pass:
		return config.MaskPass
	case Hash:
		return config.MaskHash
	case Null:
		return config.MaskNull
	}
	return config.MaskMask
}

func parseAction(s string) (Action, error) {
	switch s {
	case config.MaskPass:
		return Pass, nil
	case config.MaskMask:
		return Mask, nil
	case config.MaskHash:
		return Hash, nil
	case config.MaskNull:
		return Null, nil
	}
	return Mask, fmt.Errorf("masking: unknown action %q", s)
}

type class struct {
	name       string
	cols       [][3]string
	values     []*regexp.Regexp
	keepPrefix int
}

// mac is a pooled HMAC state with room for its sum.
type mac struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// Dictionary is a compiled data dictionary. It and its policies are safe
// for concurrent use.
type Dictionary struct {
	classes []class
	key     []byte
	// macs holds keyed HMAC-SHA256 states for the hash action.
	macs sync.Pool
}

// Compile compiles a validated dictionary; key keys the hash action.
func Compile(d config.DataDictionary, key []byte) (*Dictionary, error) {
	out := &Dictionary{key: key}
	out.macs.New = func() any { return &mac{h: hmac.New(sha256.New, key)} }
	for _, c := range d.Classifications {
		cl := class{name: c.Name, keepPrefix: c.KeepPrefix}
		for _, p := range c.Columns {
			s, t, col, ok := config.ColumnPatternParts(p)
			if !ok {
				return nil, fmt.Errorf("masking: classification %s: bad column pattern %q", c.Name, p)
			}
			cl.cols = append(cl.cols, [3]string{s, t, col})
		}
		for _, v := range c.Values {
			re, err := regexp.Compile(v)
			if err != nil {
				return nil, fmt.Errorf("masking: classification %s: %w", c.Name, err)
			}
			cl.values = append(cl.values, re)
		}
		out.classes = append(out.classes, cl)
	}
	return out, nil
}

// Policy is a role's masking rules over a dictionary. A nil *Policy
// means the role does not mask.
type Policy struct {
	d *Dictionary
	// actions holds the action of each classification, by index.
	actions []Action
	unknown Action
	// values lists the classifications with value patterns whose action
	// is not pass: only they can upgrade a passed value.
	values []int
}

// Policy returns the role's policy, or nil when rules is empty.
func (d *Dictionary) Policy(rules map[string]string) (*Policy, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	p := &Policy{d: d, unknown: Mask, actions: make([]Action, len(d.classes))}
	if u, ok := rules[config.MaskUnknown]; ok {
		a, err := parseAction(u)
		if err != nil {
			return nil, err
		}
		p.unknown = a
	}
	known := 0
	for i, c := range d.classes {
		p.actions[i] = p.unknown
		if s, ok := rules[c.name]; ok {
			a, err := parseAction(s)
			if err != nil {
				return nil, err
			}
			p.actions[i] = a
			known++
		}
		if len(c.values) > 0 && p.actions[i] != Pass {
			p.values = append(p.values, i)
		}
	}
	if _, ok := rules[config.MaskUnknown]; ok {
		known++
	}
	if known != len(rules) {
		return nil, errors.New("masking: rules name an unknown classification")
	}
	return p, nil
}

// Unknown is the role's action for fields it cannot classify.
func (p *Policy) Unknown() Action { return p.unknown }

// Column is a result column resolved against the catalog.
type Column struct {
	Schema, Table, Name string
	// Derived is set for relations whose columns may be computed from
	// others (views, materialized views): an unmatched column of one is
	// unknown, not unclassified.
	Derived bool
}

// Format of a field's values.
const (
	Text = iota
	Binary
	// UnknownFormat is a field whose format the proxy does not know.
	UnknownFormat
)

// Field is how one result column's values are rewritten.
type Field struct {
	Action Action
	// Class is the classification's index, or -1 (unclassified or
	// unknown).
	Class int
	// TypeOID and Format describe the values.
	TypeOID uint32
	Format  int
}

// Field classifies a result column: col is nil when the column cannot be
// resolved (an expression, a function result, a dropped or invisible
// relation).
func (p *Policy) Field(col *Column, typeOID uint32, format int) Field {
	f := Field{Action: p.unknown, Class: -1, TypeOID: typeOID, Format: format}
	if col == nil {
		return f
	}
	for i := range p.d.classes {
		if p.d.classes[i].matches(col) {
			f.Action, f.Class = p.actions[i], i
			return f
		}
	}
	if !col.Derived {
		f.Action = Pass
	}
	return f
}

// Unresolved is the field for a value whose column the proxy has no
// description of.
func (p *Policy) Unresolved() Field {
	return Field{Action: p.strict(), Class: -1, Format: UnknownFormat}
}

// Unresolvable is the field of a table column the catalog did not
// resolve (the lookup failed, or the table is not visible to it): it may
// be classified, so even a role that passes unknown fields masks it.
func (p *Policy) Unresolvable(typeOID uint32, format int) Field {
	return Field{Action: p.strict(), Class: -1, TypeOID: typeOID, Format: format}
}

// strict is the unknown action, but never pass.
func (p *Policy) strict() Action {
	if p.unknown == Pass {
		return Mask
	}
	return p.unknown
}

func (c *class) matches(col *Column) bool {
	for _, pat := range c.cols {
		if globMatch(pat[0], col.Schema) && globMatch(pat[1], col.Table) && globMatch(pat[2], col.Name) {
			return true
		}
	}
	return false
}

func globMatch(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return ok && err == nil
}

// Textual reports whether a value of this type and format is the type's
// text: the text format, or the binary format of string types (whose
// binary form is their UTF-8 text).
func Textual(typeOID uint32, format int) bool {
	if format == Text {
		return true
	}
	if format != Binary {
		return false
	}
	switch typeOID {
	case 25, 1043, 1042, 19, 705, 114: // text, varchar, bpchar, name, unknown, json
		return true
	}
	return false
}

// apply appends the rewritten value v of field f to dst; null reports a
// NULL result.
func (p *Policy) apply(dst []byte, f Field, v []byte) (out []byte, null bool) {
	a, keep := f.Action, 0
	if f.Class >= 0 {
		keep = p.d.classes[f.Class].keepPrefix
	}
	textual := Textual(f.TypeOID, f.Format)
	if a == Pass && len(p.values) > 0 && textual && f.Class < 0 {
		// Value patterns upgrade an unclassified value.
		for _, i := range p.values {
			if p.d.classes[i].matchesValue(v) {
				a, keep = p.actions[i], p.d.classes[i].keepPrefix
				break
			}
		}
	}
	if a == Mask || a == Hash {
		if !textual && f.Format == Binary {
			// Rebuild the text of a binary value where the type allows.
			var buf [40]byte // the longest: a uuid's 36 characters
			v, textual = binaryText(buf[:0], f.TypeOID, v)
		}
	}
	switch {
	case a == Pass:
		return append(dst, v...), false
	case a == Null || !textual:
		// Binary values of non-string types cannot carry a masked or
		// hashed text: they become NULL.
		return dst, true
	case a == Hash:
		m := p.d.macs.Get().(*mac)
		m.h.Reset()
		m.h.Write(v)
		dst = append(dst, "h:"...)
		dst = hex.AppendEncode(dst, m.h.Sum(m.sum[:0])[:12])
		p.d.macs.Put(m)
		return dst, false
	}
	return maskText(dst, v, keep), false
}

func (c *class) matchesValue(v []byte) bool {
	for _, re := range c.values {
		if re.Match(v) {
			return true
		}
	}
	return false
}

// maskText keeps the first keep characters of v and its punctuation and
// replaces every later letter and digit with '*'. Invalid UTF-8 bytes are
// replaced too.
func maskText(dst, v []byte, keep int) []byte {
	for i := 0; len(v) > 0; i++ {
		r, n := utf8.DecodeRune(v)
		switch {
		case i < keep && r != utf8.RuneError:
			dst = append(dst, v[:n]...)
		case r == utf8.RuneError || unicode.IsLetter(r) || unicode.IsDigit(r):
			dst = append(dst, '*')
		default:
			dst = append(dst, v[:n]...)
		}
		v = v[n:]
	}
	return dst
}
