package config

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
)

// DataDictionary classifies database columns for masking on the
// PostgreSQL wire (docs/data-protection.md).
type DataDictionary struct {
	// HashKey keys the HMAC of the "hash" masking action, so equal values
	// hash equally across sessions and targets and joins still work.
	// Required when a role hashes. Default: none.
	HashKey Secret `yaml:"hash_key"`
	// Classifications are the kinds of protected data. Default: none.
	Classifications []Classification `yaml:"classifications"`
}

// Classification is one kind of protected data (subject_id, dob, ...).
type Classification struct {
	// Name is what roles' masking rules refer to. Required; "unknown" is
	// reserved.
	Name string `yaml:"name"`
	// Columns are "schema.table.column" patterns (path.Match globs per
	// part, e.g. "*.*.subject_id", "clinical.subjects.dob"), matched
	// case-sensitively against the catalog names. Default: none.
	Columns []string `yaml:"columns"`
	// Values are regular expressions matched against whole text values of
	// columns no column pattern classifies; a matching value is treated as
	// this classification. Values only ever upgrade a value to classified.
	// Default: none.
	Values []string `yaml:"values"`
	// KeepPrefix is how many leading characters "mask" keeps; later
	// letters and digits become '*', other characters (the format) stay.
	// Default: 0.
	KeepPrefix int `yaml:"keep_prefix"`
}

// Masking actions a role applies per classification (Role.Masking).
const (
	MaskPass = "pass"
	MaskMask = "mask"
	MaskHash = "hash"
	MaskNull = "null"
	// MaskUnknown is the Role.Masking key for fields the proxy cannot
	// classify (expressions, function results, unresolvable columns) and
	// classifications the role does not name.
	MaskUnknown = "unknown"
)

// ColumnPatternParts splits a column pattern into schema, table and
// column globs.
func ColumnPatternParts(p string) (schema, table, column string, ok bool) {
	parts := strings.Split(p, ".")
	if len(parts) != 3 {
		return "", "", "", false
	}
	for _, s := range parts {
		if s == "" {
			return "", "", "", false
		}
		if _, err := path.Match(s, ""); err != nil {
			return "", "", "", false
		}
	}
	return parts[0], parts[1], parts[2], true
}

// validateDataDictionary checks the dictionary and every role's masking
// rules against it.
func (c *Config) validateDataDictionary(ck *checker) {
	d := &c.DataDictionary
	names := map[string]bool{}
	for i, cl := range d.Classifications {
		p := fmt.Sprintf("data_dictionary.classifications[%d]", i)
		switch {
		case cl.Name == "":
			ck.add(p+".name", "required")
		case cl.Name == MaskUnknown:
			ck.add(p+".name", "%q is reserved for fields that cannot be classified", MaskUnknown)
		case names[cl.Name]:
			ck.add(p+".name", "duplicate classification %q", cl.Name)
		}
		names[cl.Name] = true
		if len(cl.Columns) == 0 && len(cl.Values) == 0 {
			ck.add(p, "needs at least one column or value pattern")
		}
		for j, col := range cl.Columns {
			if _, _, _, ok := ColumnPatternParts(col); !ok {
				ck.add(fmt.Sprintf("%s.columns[%d]", p, j), "must be schema.table.column with glob parts, e.g. *.*.subject_id, not %q", col)
			}
		}
		for j, v := range cl.Values {
			if _, err := regexp.Compile(v); err != nil {
				ck.add(fmt.Sprintf("%s.values[%d]", p, j), "invalid regular expression: %v", err)
			}
		}
		if cl.KeepPrefix < 0 {
			ck.add(p+".keep_prefix", "must be >= 0")
		}
	}
	hashes := false
	for i := range c.Targets {
		t := &c.Targets[i]
		for j := range t.Roles {
			r := &t.Roles[j]
			if r.ResultSample < 0 || r.ResultSample > 1000 {
				ck.add(fmt.Sprintf("targets[%d].roles[%d].result_sample", i, j), "must be between 0 and 1000 rows")
			} else if r.ResultSample > 0 && len(r.Masking) == 0 {
				ck.add(fmt.Sprintf("targets[%d].roles[%d].result_sample", i, j), "only for roles with masking rules: a sample of an unmasked role would record PHI")
			}
			if r.Unmask != nil {
				validateUnmask(ck, fmt.Sprintf("targets[%d].roles[%d]", i, j), t, r, names)
			}
			if len(r.Masking) == 0 {
				continue
			}
			p := fmt.Sprintf("targets[%d].roles[%d].masking", i, j)
			if t.Kind != "postgres" {
				ck.add(p, "applies to postgres targets only")
			}
			keys := make([]string, 0, len(r.Masking))
			for k := range r.Masking {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				switch a := r.Masking[k]; a {
				case MaskPass, MaskMask, MaskNull:
				case MaskHash:
					hashes = true
				case "":
					ck.add(p+"."+k, `must be pass, mask, hash or "null" (quote null: a bare null is YAML's empty value)`)
				default:
					ck.add(p+"."+k, "must be pass, mask, hash or null, not %q", a)
				}
				if k != MaskUnknown && !names[k] {
					ck.add(p+"."+k, "unknown classification %q (declare it under data_dictionary.classifications)", k)
				}
			}
		}
	}
	if hashes && !d.HashKey.IsSet() {
		ck.add("data_dictionary.hash_key", "required when a role's masking uses hash")
	}
}

// MaskingRules returns the masking rules in effect for role r of t: its
// own, or for an unmask variant its base role's with the unmasked
// classifications passed. The second result lists the unmasked
// classifications.
func (t *Target) MaskingRules(r *Role) (map[string]string, []string) {
	if r.Unmask == nil {
		return r.Masking, nil
	}
	base, ok := t.FindRole(r.Unmask.Role)
	if !ok || len(base.Masking) == 0 {
		// Validation refuses this; never relay unmasked.
		return map[string]string{MaskUnknown: MaskMask}, nil
	}
	rules := maps.Clone(base.Masking)
	for _, c := range r.Unmask.Classifications {
		rules[c] = MaskPass
	}
	return rules, r.Unmask.Classifications
}

// validateUnmask checks an unmask variant against its base role.
func validateUnmask(ck *checker, p string, t *Target, r *Role, classes map[string]bool) {
	u := r.Unmask
	if len(r.Masking) > 0 {
		ck.add(p+".masking", "an unmask role takes its rules from unmask.role; remove masking")
	}
	base, ok := t.FindRole(u.Role)
	switch {
	case u.Role == "":
		ck.add(p+".unmask.role", "required")
	case !ok:
		ck.add(p+".unmask.role", "unknown role %q of target %s", u.Role, t.Name)
	case len(base.Masking) == 0:
		ck.add(p+".unmask.role", "role %q has no masking rules to unmask", u.Role)
	}
	if len(u.Classifications) == 0 {
		ck.add(p+".unmask.classifications", "list the classifications this role sees in clear")
	}
	for i, c := range u.Classifications {
		if !classes[c] {
			ck.add(fmt.Sprintf("%s.unmask.classifications[%d]", p, i), "unknown classification %q", c)
		}
	}
}
