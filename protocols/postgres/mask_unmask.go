package pgproxy

import (
	"strings"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/protocols/postgres/masking"
	"github.com/custos-pam/custos/recorder/event"
)

// Who saw which fields unmasked (docs/data-protection.md). A session of an
// unmask variant passes some classifications its base role masks. At the
// first row of each result the proxy works out which classified columns
// that result returns in clear because of the unmask grant, and records
// them as a note "unmasked" in the statement timeline: classification and
// schema.table.column, never a value. The first time a session returns a
// column in clear it is also audited (postgres.unmasked), so the dashboard
// lists who saw what without opening recordings.

// setClear marks the classifications an unmask grant passes.
func (m *masker) setClear(unmasked []string) {
	if len(unmasked) == 0 {
		return
	}
	m.clear, m.shown = map[int]bool{}, map[string]bool{}
	for _, name := range unmasked {
		if i := m.policy.ClassIndex(name); i >= 0 {
			m.clear[i] = true
		}
	}
}

// currentDesc returns the description of the result being answered, the
// one current's fields were classified from; nil when unknown.
func (h *maskHandler) currentDesc() *description {
	p, ok := h.m.head()
	if !ok || p.kind != pendExecute {
		return h.curDesc
	}
	switch pi := p.portal; {
	case pi == nil:
		return nil
	case pi.desc != nil:
		return pi.desc
	case pi.stmt != nil:
		return pi.stmt.desc
	}
	return nil
}

// UnmaskedColumn is a classified column a session received in clear under
// an unmask grant: the audit details of postgres.unmasked list them.
type UnmaskedColumn struct {
	Classification string `json:"classification"`
	// Column is schema.table.column as the catalog names it.
	Column string `json:"column"`
}

// noteClear records which columns of the current result are returned in
// clear because the unmask grant passes their classification.
func (h *maskHandler) noteClear() {
	h.noted = true
	fields, d := h.current(), h.currentDesc()
	if fields == nil || d == nil {
		return
	}
	var cols, fresh []UnmaskedColumn
	for i, f := range fields {
		if f.Action != masking.Pass || !h.m.clear[f.Class] || i >= len(d.cols) || d.cols[i] == nil {
			continue
		}
		c := d.cols[i]
		uc := UnmaskedColumn{Classification: h.m.policy.ClassName(f.Class), Column: c.Schema + "." + c.Table + "." + c.Name}
		cols = append(cols, uc)
		if !h.m.shown[uc.Column] {
			h.m.shown[uc.Column] = true
			fresh = append(fresh, uc)
		}
	}
	if len(cols) == 0 {
		return
	}
	h.so.evs = append(h.so.evs, event.Event{Kind: event.KindNote, Op: "unmasked",
		Text: "returned in clear under the unmask grant: " + unmaskedText(cols), Args: unmaskedArgs(cols)})
	if len(fresh) > 0 {
		h.so.s.Audit(broker.AuditUnmasked, broker.OutcomeSuccess, "classified columns returned in clear under the unmask grant: "+unmaskedText(fresh),
			map[string]any{"columns": fresh, "role": h.m.role})
	}
}

// unmaskedText is "subject_id (public.subjects.subject_id), ...".
func unmaskedText(cols []UnmaskedColumn) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = c.Classification + " (" + c.Column + ")"
	}
	return strings.Join(parts, ", ")
}

// unmaskedArgs are the note's arguments: "classification schema.table.column".
func unmaskedArgs(cols []UnmaskedColumn) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.Classification + " " + c.Column
	}
	return out
}
