package masking

import (
	"encoding/binary"
	"testing"

	"github.com/custos-pam/custos/broker/config"
)

var testDict = config.DataDictionary{Classifications: []config.Classification{
	{Name: "subject_id", Columns: []string{"*.*.subject_id"}, Values: []string{`^S-[0-9]{4}$`}, KeepPrefix: 2},
	{Name: "dob", Columns: []string{"public.subjects.dob", "public.visits.birth*"}, KeepPrefix: 4},
	{Name: "name", Columns: []string{"*.subjects.name"}},
}}

func testPolicy(t testing.TB, rules map[string]string) *Policy {
	t.Helper()
	d, err := Compile(testDict, []byte("test key"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := d.Policy(rules)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMaskFieldClassification(t *testing.T) {
	p := testPolicy(t, map[string]string{"subject_id": "hash", "dob": "mask", "name": "pass"})
	col := func(s, tb, c string, derived bool) *Column {
		return &Column{Schema: s, Table: tb, Name: c, Derived: derived}
	}
	for _, tc := range []struct {
		name  string
		col   *Column
		want  Action
		class int
	}{
		{"subject_id anywhere", col("clinical", "visits", "subject_id", false), Hash, 0},
		{"dob in subjects", col("public", "subjects", "dob", false), Mask, 1},
		{"dob glob", col("public", "visits", "birth_date", false), Mask, 1},
		{"dob in another schema is unclassified", col("other", "subjects", "dob", false), Pass, -1},
		{"name passes", col("public", "subjects", "name", false), Pass, 2},
		{"unclassified table column", col("public", "subjects", "site", false), Pass, -1},
		{"case sensitive", col("public", "subjects", "SUBJECT_ID", false), Pass, -1},
		{"unmatched view column is unknown", col("public", "v_subjects", "sid", true), Mask, -1},
		{"matched view column", col("public", "v_subjects", "subject_id", true), Hash, 0},
		{"expression", nil, Mask, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := p.Field(tc.col, 25, Text)
			if f.Action != tc.want || f.Class != tc.class {
				t.Fatalf("got %v class %d, want %v class %d", f.Action, f.Class, tc.want, tc.class)
			}
		})
	}
	// A classification the role does not name, and "unknown".
	p = testPolicy(t, map[string]string{"subject_id": "pass", "unknown": "null"})
	if f := p.Field(col("public", "subjects", "dob", false), 25, Text); f.Action != Null {
		t.Errorf("unnamed classification: %v, want the unknown action null", f.Action)
	}
	if f := p.Field(nil, 25, Text); f.Action != Null {
		t.Errorf("unknown: %v", f.Action)
	}
	// A role that passes unknown fields still never passes a column it
	// could not resolve, nor a value without a description.
	p = testPolicy(t, map[string]string{"subject_id": "hash", "unknown": "pass"})
	if f := p.Field(nil, 25, Text); f.Action != Pass {
		t.Errorf("expression under unknown: pass: %v", f.Action)
	}
	if f := p.Unresolvable(25, Text); f.Action != Mask {
		t.Errorf("unresolvable column under unknown: pass: %v", f.Action)
	}
	if f := p.Unresolved(); f.Action != Mask || f.Format != UnknownFormat {
		t.Errorf("undescribed value under unknown: pass: %+v", f)
	}
	p = testPolicy(t, map[string]string{"unknown": "null"})
	if f := p.Unresolvable(25, Text); f.Action != Null {
		t.Errorf("unresolvable column under unknown: null: %v", f.Action)
	}
}

func TestMaskNoRulesIsNil(t *testing.T) {
	if p := testPolicy(t, nil); p != nil {
		t.Fatal("a role without rules must have no policy (the relay's fast path)")
	}
	d, _ := Compile(testDict, nil)
	if _, err := d.Policy(map[string]string{"ssn": "mask"}); err == nil {
		t.Fatal("unknown classification accepted")
	}
	if _, err := d.Policy(map[string]string{"dob": "hide"}); err == nil {
		t.Fatal("unknown action accepted")
	}
}

// row builds a DataRow body; a nil value is NULL.
func row(vals ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

func vals(t *testing.T, body []byte) []string {
	t.Helper()
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	var out []string
	for range n {
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			out = append(out, "NULL")
			continue
		}
		out = append(out, string(body[:l]))
		body = body[l:]
	}
	if len(body) != 0 {
		t.Fatalf("trailing bytes")
	}
	return out
}

func TestMaskRewriteValues(t *testing.T) {
	p := testPolicy(t, map[string]string{"subject_id": "mask", "dob": "mask", "name": "null", "unknown": "mask"})
	q := testPolicy(t, map[string]string{"subject_id": "hash", "dob": "hash"})
	sid := &Column{Schema: "public", Table: "subjects", Name: "subject_id"}
	dob := &Column{Schema: "public", Table: "subjects", Name: "dob"}
	name := &Column{Schema: "public", Table: "subjects", Name: "name"}
	site := &Column{Schema: "public", Table: "subjects", Name: "site"}
	int4 := []byte{0, 0, 4, 18}
	for _, tc := range []struct {
		name   string
		p      *Policy
		fields []Field
		in     [][]byte
		want   []string
	}{
		{"mask keeps prefix and format", p, []Field{p.Field(sid, 25, Text), p.Field(dob, 1082, Text)},
			[][]byte{[]byte("S-1042"), []byte("1980-03-14")}, []string{"S-****", "1980-**-**"}},
		{"null action and NULL values", p, []Field{p.Field(name, 25, Text), p.Field(sid, 25, Text)},
			[][]byte{[]byte("Ada"), nil}, []string{"NULL", "NULL"}},
		{"expression masked by unknown", p, []Field{p.Field(nil, 25, Text)},
			[][]byte{[]byte("ADA LOVELACE")}, []string{"*** ********"}},
		{"binary text masks by text rules", p, []Field{p.Field(sid, 25, Binary)},
			[][]byte{[]byte("S-1042")}, []string{"S-****"}},
		{"binary int masked by its text", p, []Field{p.Field(sid, 23, Binary)},
			[][]byte{int4}, []string{"10**"}},
		{"binary date masked by its ISO text", p, []Field{p.Field(dob, 1082, Binary)},
			[][]byte{{0xff, 0xff, 0xe3, 0xc0}}, []string{"1980-**-**"}},
		{"binary uuid", p, []Field{p.Field(nil, 2950, Binary)},
			[][]byte{{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}},
			[]string{"********-****-****-****-************"}},
		{"binary float masked is NULL", p, []Field{p.Field(sid, 701, Binary)},
			[][]byte{{0, 0, 0, 0, 0, 0, 0, 0}}, []string{"NULL"}},
		{"binary date infinity is NULL", p, []Field{p.Field(dob, 1082, Binary)},
			[][]byte{{0x7f, 0xff, 0xff, 0xff}}, []string{"NULL"}},
		{"binary int of the wrong length is NULL", p, []Field{p.Field(sid, 23, Binary)},
			[][]byte{{1, 2}}, []string{"NULL"}},
		{"unclassified passes", p, []Field{p.Field(site, 25, Text)},
			[][]byte{[]byte("Leeds")}, []string{"Leeds"}},
		{"value pattern upgrades unclassified", p, []Field{p.Field(site, 25, Text)},
			[][]byte{[]byte("S-1042")}, []string{"S-****"}},
		{"value pattern never downgrades", p, []Field{p.Field(name, 25, Text)},
			[][]byte{[]byte("S-1042")}, []string{"NULL"}},
		{"more values than fields: unresolved", p, []Field{p.Field(site, 25, Text)},
			[][]byte{[]byte("Leeds"), []byte("x")}, []string{"Leeds", "NULL"}},
		{"unicode mask", p, []Field{p.Field(nil, 25, Text)},
			[][]byte{[]byte("Zoë-7")}, []string{"***-*"}},
		{"hash", q, []Field{q.Field(sid, 25, Text), q.Field(sid, 1043, Binary)},
			[][]byte{[]byte("S-1042"), []byte("S-1042")}, []string{"h:3b0d1c6d3f0b3b6d3e1f4b1a", "h:3b0d1c6d3f0b3b6d3e1f4b1a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tc.p.Rewrite(nil, row(tc.in...), tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			got := vals(t, out)
			if tc.name == "hash" {
				// Equal inputs hash equally (joins); the exact digits are
				// checked against a second computation below.
				if got[0] != got[1] || len(got[0]) != 26 || got[0][:2] != "h:" {
					t.Fatalf("hashes %q", got)
				}
				return
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("value %d: got %q want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
	// A different key hashes differently; the same key the same.
	d2, _ := Compile(testDict, []byte("other key"))
	q2, _ := d2.Policy(map[string]string{"subject_id": "hash"})
	a, _ := q.Rewrite(nil, row([]byte("S-1042")), []Field{q.Field(sid, 25, Text)})
	b, _ := q2.Rewrite(nil, row([]byte("S-1042")), []Field{q2.Field(sid, 25, Text)})
	c, _ := testPolicy(t, map[string]string{"subject_id": "hash"}).Rewrite(nil, row([]byte("S-1042")), []Field{q.Field(sid, 25, Text)})
	if string(a) == string(b) || string(a) != string(c) {
		t.Fatal("hash is not keyed")
	}
}

func TestMaskRewriteMalformed(t *testing.T) {
	p := testPolicy(t, map[string]string{"subject_id": "mask"})
	for _, b := range [][]byte{
		{}, {0}, {0, 1}, {0, 1, 0, 0, 0, 5, 'a'}, {0, 1, 0xff, 0xff, 0xff, 0xfe},
		append(row([]byte("a")), 'x'),
	} {
		if _, err := p.Rewrite(nil, b, nil); err == nil {
			t.Errorf("%x accepted", b)
		}
	}
}

func FuzzRewriteRow(f *testing.F) {
	f.Add(row([]byte("S-1042"), nil, []byte("1980-03-14")), uint8(0))
	f.Add(row([]byte{0, 0, 4, 18}), uint8(1))
	f.Add([]byte{0, 2, 0, 0, 0, 1}, uint8(2))
	p := testPolicy(f, map[string]string{"subject_id": "hash", "dob": "mask", "name": "null"})
	cols := []*Column{{Schema: "public", Table: "subjects", Name: "subject_id"}, {Schema: "public", Table: "subjects", Name: "dob"}, nil,
		{Schema: "public", Table: "subjects", Name: "site"}}
	f.Fuzz(func(t *testing.T, body []byte, sel uint8) {
		var fields []Field
		for i := range int(sel % 5) {
			fields = append(fields, p.Field(cols[(int(sel)+i)%len(cols)], uint32(sel)%30, int(sel>>4)%3))
		}
		out, err := p.Rewrite(nil, body, fields)
		if err != nil {
			return
		}
		// The output is a well-formed DataRow with as many values, and
		// rewriting it again is well-formed too.
		if len(out) < 2 || string(out[:2]) != string(body[:2]) {
			t.Fatalf("value count changed")
		}
		if _, err := p.Rewrite(nil, out, fields); err != nil {
			t.Fatalf("rewritten row does not parse: %v", err)
		}
	})
}

// TestMaskBinaryTextMatchesPostgres: the text rebuilt from binary values
// is PostgreSQL's, so a hash is the same in either format.
func TestMaskBinaryTextMatchesPostgres(t *testing.T) {
	for _, tc := range []struct {
		oid  uint32
		v    []byte
		want string
	}{
		{21, []byte{0xff, 0xfe}, "-2"},
		{23, []byte{0x80, 0, 0, 0}, "-2147483648"},
		{20, []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "9223372036854775807"},
		{26, []byte{0xff, 0xff, 0xff, 0xff}, "4294967295"},
		{1082, []byte{0, 0, 0, 0}, "2000-01-01"},
		{1082, []byte{0xff, 0xff, 0xe3, 0xc0}, "1980-03-14"},
		{1082, []byte{0, 0, 0x0e, 0x45}, "2010-01-01"},
	} {
		got, ok := binaryText(nil, tc.oid, tc.v)
		if !ok || string(got) != tc.want {
			t.Errorf("%d %x: %q %v, want %q", tc.oid, tc.v, got, ok, tc.want)
		}
	}
	p := testPolicy(t, map[string]string{"subject_id": "hash"})
	sid := &Column{Schema: "public", Table: "subjects", Name: "subject_id"}
	a, _ := p.Rewrite(nil, row([]byte("1042")), []Field{p.Field(sid, 23, Text)})
	b, _ := p.Rewrite(nil, row([]byte{0, 0, 4, 18}), []Field{p.Field(sid, 23, Binary)})
	if string(a) != string(b) {
		t.Fatal("an int4 hashes differently in text and binary format")
	}
}
