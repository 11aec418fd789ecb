package masking

// ClassName is the name of classification i (a Field's Class), "" when
// there is none.
func (d *Dictionary) ClassName(i int) string {
	if d == nil || i < 0 || i >= len(d.classes) {
		return ""
	}
	return d.classes[i].name
}

// ClassName is the name of the field's classification in the policy's
// dictionary, "" for unclassified and unknown fields.
func (p *Policy) ClassName(i int) string { return p.d.ClassName(i) }

// Classify returns the name of the first classification whose column
// patterns match col, "" when none does. Value patterns are not consulted:
// they classify values, not columns.
func (d *Dictionary) Classify(col Column) string {
	if d == nil {
		return ""
	}
	for i := range d.classes {
		if d.classes[i].matches(&col) {
			return d.classes[i].name
		}
	}
	return ""
}

// HasColumnPatterns reports whether any classification names columns;
// without them no table has a classified column.
func (d *Dictionary) HasColumnPatterns() bool {
	if d == nil {
		return false
	}
	for i := range d.classes {
		if len(d.classes[i].cols) > 0 {
			return true
		}
	}
	return false
}

// ClassIndex is the index of the named classification in the policy's
// dictionary (a Field's Class), -1 when there is none.
func (p *Policy) ClassIndex(name string) int {
	for i := range p.d.classes {
		if p.d.classes[i].name == name {
			return i
		}
	}
	return -1
}
