package pgproxy

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/protocols/postgres/masking"
)

// FuzzMaskStream feeds untrusted client and server streams through a
// masked session's observers, with every column unresolvable and the
// role's unknown action mask: whatever the bytes, the client must receive
// well-framed messages and no letter or digit in any DataRow value.
func FuzzMaskStream(f *testing.F) {
	enc := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) []byte {
		var b []byte
		for _, m := range msgs {
			b, _ = m.Encode(b)
		}
		return b
	}
	row := &pgproto3.DataRow{Values: [][]byte{[]byte("S-1001"), nil, []byte("1961-04-12")}}
	desc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{
		{Name: []byte("subject_id"), TableOID: 16384, TableAttributeNumber: 1, DataTypeOID: 25},
		{Name: []byte("n"), DataTypeOID: 23, Format: 1},
		{Name: []byte("dob"), TableOID: 16384, TableAttributeNumber: 2, DataTypeOID: 1082}}}
	f.Add(enc(&pgproto3.Query{String: "SELECT 1"}),
		enc(desc, row, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	f.Add(enc(&pgproto3.Parse{Name: "s"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{},
		&pgproto3.Bind{PreparedStatement: "s", ResultFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		enc(&pgproto3.ParseComplete{}, &pgproto3.ParameterDescription{}, desc, &pgproto3.ReadyForQuery{TxStatus: 'I'},
			&pgproto3.BindComplete{}, row, row, &pgproto3.CommandComplete{CommandTag: []byte("SELECT 2")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	f.Add(enc(&pgproto3.Query{String: "COPY t TO STDOUT"}, &pgproto3.FunctionCall{Function: 1}),
		enc(&pgproto3.CopyOutResponse{}, &pgproto3.CopyData{Data: []byte("S-1001\n")}, &pgproto3.CopyDone{},
			&pgproto3.CommandComplete{CommandTag: []byte("COPY 1")}, &pgproto3.ReadyForQuery{TxStatus: 'I'},
			&pgproto3.FunctionCallResponse{Result: []byte("S-1001")}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	dict, err := masking.Compile(config.DataDictionary{Classifications: []config.Classification{
		{Name: "subject_id", Columns: []string{"*.*.subject_id"}, Values: []string{`^S-`}}}}, []byte("fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	rules := map[string]string{"subject_id": "hash", "unknown": "mask"}
	pol, err := dict.Policy(rules)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, client, server []byte) {
		s := &session{}
		m := newMasker(pol, "fuzz", rules)
		co := &clientObserver{s: s, red: redactor{policy: paramsRecord}, mask: m, limit: 1 << 12}
		so := newServerObserver(s, 'I', true, 5, 4096)
		h := &maskHandler{ctx: context.Background(), m: m, so: so,
			cat: &catalog{failed: true, cols: map[colKey]*masking.Column{}, looked: map[uint32]bool{}}}
		sc := scanner{h: co, maxStream: 1 << 16, maxDecode: 1 << 12}
		sc.scan(client)
		sc = scanner{h: h, maxStream: 1 << 16, maxDecode: 1 << 12}
		sc.scan(server)
		out := h.output()
		for len(out) > 0 {
			if len(out) < 5 {
				t.Fatalf("truncated header %x", out)
			}
			n := int(binary.BigEndian.Uint32(out[1:])) - 4
			if n < 0 || n > len(out)-5 {
				t.Fatalf("bad length %d of %q", n, out[0])
			}
			if out[0] == 'D' {
				checkMaskedRow(t, out[5:5+n])
			}
			out = out[5+n:]
		}
	})
}

// checkMaskedRow fails when a DataRow value holds a letter or digit other
// than a hash ("h:" and hex).
func checkMaskedRow(t *testing.T, b []byte) {
	t.Helper()
	cnt := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	for range cnt {
		l := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if l < 0 {
			continue
		}
		v := b[:l]
		b = b[l:]
		if len(v) == 26 && string(v[:2]) == "h:" {
			continue
		}
		for _, c := range v {
			if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
				t.Fatalf("value %q relayed unmasked", v)
			}
		}
	}
}

// TestMaskDataRowsDoNotAllocate: once a result's columns are known, a
// masked session rewrites its DataRows without allocating.
func TestMaskDataRowsDoNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector empties sync.Pools at random; run without -race")
	}
	dict, _ := masking.Compile(config.DataDictionary{Classifications: []config.Classification{
		{Name: "subject_id", Values: []string{`^S-[0-9]+$`}}}}, []byte("k"))
	for _, rules := range []map[string]string{{"unknown": "hash"}, {"unknown": "mask"}, {"unknown": "pass", "subject_id": "mask"}} {
		pol, _ := dict.Policy(rules)
		m := newMasker(pol, "r", rules)
		if err := m.client('Q', []byte("SELECT\x00")); err != nil {
			t.Fatal(err)
		}
		s := &session{}
		h := &maskHandler{ctx: context.Background(), m: m, so: newServerObserver(s, 'I', false, 0, 0),
			cat: &catalog{failed: true, cols: map[colKey]*masking.Column{}, looked: map[uint32]bool{}}}
		var b []byte
		b, _ = (&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a"), DataTypeOID: 25}, {Name: []byte("b"), DataTypeOID: 23}}}).Encode(b)
		sc := scanner{h: h, maxStream: maxServerMessage, maxDecode: defaultMaxMessage}
		if _, err := sc.scan(b); err != nil {
			t.Fatal(err)
		}
		var rows []byte
		for range 100 {
			rows, _ = (&pgproto3.DataRow{Values: [][]byte{[]byte("S-1001"), []byte("42"), nil}}).Encode(rows)
		}
		h.reset()
		sc.scan(rows)
		h.reset()
		allocs := testing.AllocsPerRun(20, func() {
			if n, err := sc.scan(rows); err != nil || n != len(rows) {
				t.Fatalf("scan: %d %v", n, err)
			}
			h.reset()
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per 100 masked rows, want 0", rules, allocs)
		}
	}
}
