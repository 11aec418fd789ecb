package pgproxy

import (
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// scanEvents runs a stream through both observers, whole and split at
// cut, and returns what each produced.
func scanEvents(stream []byte, cut int, policy string) (string, error) {
	s := &session{}
	co := &clientObserver{s: s, red: redactor{policy: policy, key: []byte("fuzz")}}
	so := newServerObserver(s, 'I', true, 5, 4096)
	var firstErr error
	for _, h := range []frameHandler{co, so} {
		sc := scanner{h: h, maxStream: 1 << 16, maxDecode: 1 << 12}
		var pending []byte
		for _, piece := range [][]byte{stream[:cut], stream[cut:]} {
			pending = append(pending, piece...)
			k, err := sc.scan(pending)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				break
			}
			pending = append(pending[:0], pending[k:]...)
		}
	}
	return dump(co.evs) + "|" + dump(so.evs), firstErr
}

// FuzzFrames feeds untrusted bytes to the frame scanner and every message
// decoder of both directions, checking that nothing panics and that how
// the stream is split never changes what is recorded.
func FuzzFrames(f *testing.F) {
	add := func(msgs ...interface{ Encode([]byte) ([]byte, error) }) {
		var b []byte
		for _, m := range msgs {
			b, _ = m.Encode(b)
		}
		f.Add(b, uint16(len(b)/2), uint8(0))
	}
	add(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{})
	add(&pgproto3.Parse{Name: "s", Query: "SELECT $1"},
		&pgproto3.Bind{PreparedStatement: "s", ParameterFormatCodes: []int16{1}, Parameters: [][]byte{{0, 0, 0, 1}}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	add(&pgproto3.FunctionCall{Function: 1, ArgFormatCodes: []uint16{0}, Arguments: [][]byte{[]byte("x"), nil}})
	add(&pgproto3.CopyData{Data: []byte("1\t2\n")}, &pgproto3.CopyDone{}, &pgproto3.CopyFail{Message: "no"})
	add(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("a")}}},
		&pgproto3.DataRow{Values: [][]byte{[]byte("v"), nil}},
		&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")},
		&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: "no such table"},
		&pgproto3.CopyOutResponse{OverallFormat: 0, ColumnFormatCodes: []uint16{0}},
		&pgproto3.ReadyForQuery{TxStatus: 'T'})
	f.Fuzz(func(t *testing.T, stream []byte, cut uint16, policy uint8) {
		pol := []string{paramsRecord, paramsHash, paramsOmit}[int(policy)%3]
		c := int(cut) % (len(stream) + 1)
		whole, errWhole := scanEvents(stream, len(stream), pol)
		split, errSplit := scanEvents(stream, c, pol)
		if (errWhole == nil) != (errSplit == nil) {
			t.Fatalf("error depends on the split at %d: %v vs %v", c, errWhole, errSplit)
		}
		if errWhole == nil && whole != split {
			t.Fatalf("events depend on the split at %d:\n%s\nvs\n%s", c, whole, split)
		}
	})
}

// FuzzStartup feeds untrusted startup packets to the startup and cancel
// decoders.
func FuzzStartup(f *testing.F) {
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "a", "database": "t/db"}},
		&pgproto3.CancelRequest{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}},
		&pgproto3.SSLRequest{},
	} {
		b, _ := m.Encode(nil)
		f.Add(b[4:])
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if st, err := parseStartup(body); err == nil {
			if len(st.Params) > 64 {
				t.Fatalf("%d parameters accepted", len(st.Params))
			}
			parseDBName(st.get("database"))
			replicationRequested(st)
			req := &loginRequest{startup: st}
			req.role, req.options = splitRoleOption(st.get("options"))
			_ = fmt.Sprint(upstreamParams(req))
		}
		if len(body) >= 4 {
			parseCancel(body[4:])
		}
	})
}
