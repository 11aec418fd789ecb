package pgproxy

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/custos-pam/custos/recorder/event"
	"github.com/jackc/pgx/v5/pgproto3"
)

func TestTagRows(t *testing.T) {
	tests := []struct {
		tag  string
		n    int64
		want bool
	}{
		{"SELECT 5", 5, true},
		{"INSERT 0 3", 3, true},
		{"UPDATE 0", 0, true},
		{"COPY 100000", 100000, true},
		{"CREATE TABLE", 0, false},
		{"BEGIN", 0, false},
		{"SELECT", 0, false},
		{"5", 0, false},
		{"", 0, false},
		{"FETCH 99999999999999999999", 0, false},
	}
	for _, tt := range tests {
		n, ok := tagRows([]byte(tt.tag))
		if n != tt.n || ok != tt.want {
			t.Errorf("tagRows(%q) = %d, %v; want %d, %v", tt.tag, n, ok, tt.n, tt.want)
		}
	}
}

func TestRenderValue(t *testing.T) {
	tests := []struct {
		v      []byte
		binary bool
		want   string
	}{
		{[]byte("plain"), false, "plain"},
		{[]byte(`\N`), false, `\\N`},
		{[]byte{0, 0, 0, 42}, true, `\x0000002a`},
		{[]byte{0xff, 0xfe}, false, `\xfffe`}, // not UTF-8
		{nil, false, ""},
	}
	for _, tt := range tests {
		if got := renderValue(tt.v, tt.binary); got != tt.want {
			t.Errorf("renderValue(%q, %v) = %q, want %q", tt.v, tt.binary, got, tt.want)
		}
	}
}

func TestErrorFields(t *testing.T) {
	body, _ := (&pgproto3.ErrorResponse{Severity: "ERREUR", SeverityUnlocalized: "ERROR", Code: "23505",
		Message: "duplicate key", Detail: "Key (id)=(5) already exists."}).Encode(nil)
	code, sev, msg := errorFields(body[headerLen:])
	if code != "23505" || sev != "ERROR" || msg != "duplicate key" {
		t.Errorf("got %q %q %q", code, sev, msg)
	}
}

// clientEvents feeds encoded frontend messages to a client observer.
func clientEvents(t *testing.T, policy string, msgs ...pgproto3.FrontendMessage) []event.Event {
	t.Helper()
	o := &clientObserver{s: &session{}, red: redactor{policy: policy, key: []byte("k")}}
	var stream []byte
	for _, m := range msgs {
		var err error
		if stream, err = m.Encode(stream); err != nil {
			t.Fatal(err)
		}
	}
	sc := scanner{h: o, maxStream: 1 << 20, maxDecode: 1 << 20}
	if n, err := sc.scan(stream); err != nil || n != len(stream) {
		t.Fatalf("scan: %d of %d, %v", n, len(stream), err)
	}
	return o.evs
}

func TestClientMessagesRecorded(t *testing.T) {
	evs := clientEvents(t, paramsRecord,
		&pgproto3.Parse{Name: "s1", Query: "SELECT $1, $2, $3"},
		&pgproto3.Bind{PreparedStatement: "s1", DestinationPortal: "p1", ParameterFormatCodes: []int16{0, 1, 0},
			Parameters: [][]byte{[]byte("text"), {0, 0, 0, 7}, nil}},
		&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
		&pgproto3.Execute{Portal: "p1", MaxRows: 10},
		&pgproto3.Sync{},
		&pgproto3.FunctionCall{Function: 764, ArgFormatCodes: []uint16{1}, Arguments: [][]byte{{0, 0, 0, 1}}},
		&pgproto3.CopyData{Data: []byte("12345")},
		&pgproto3.CopyDone{},
		&pgproto3.Query{String: "SELECT 1"},
		&pgproto3.Terminate{},
	)
	want := []event.Event{
		{Kind: event.KindPGParse, Name: "s1", Text: "SELECT $1, $2, $3"},
		{Kind: event.KindPGBind, Name: "p1", Text: "s1", Args: []string{"text", `\x00000007`, nullArg}, N: 3},
		{Kind: event.KindPGExecute, Name: "p1", N: 10},
		{Kind: event.KindPGQuery, Op: "function_call", Name: "764", Args: []string{`\x00000001`}, N: 1},
		{Kind: event.KindPGCopy, Op: "done", Text: "in", N: 5},
		{Kind: event.KindPGResult, Op: "copy_in", Text: "5994471abb01112afcc18159f6cc74b4f511b99806da59b3caf5a9c173cacfc5", Bytes: 5},
		{Kind: event.KindPGQuery, Text: "SELECT 1"},
	}
	if len(evs) != len(want) {
		t.Fatalf("events:\n%s", dump(evs))
	}
	for i := range want {
		if dump(evs[i:i+1]) != dump(want[i:i+1]) {
			t.Errorf("event %d:\n got %s want %s", i, dump(evs[i:i+1]), dump(want[i:i+1]))
		}
	}
}

func TestBindRedaction(t *testing.T) {
	bind := &pgproto3.Bind{Parameters: [][]byte{[]byte("123-45-6789")}}
	rec := clientEvents(t, paramsRecord, bind)[0]
	hashed := clientEvents(t, paramsHash, bind)[0]
	again := clientEvents(t, paramsHash, bind)[0]
	omitted := clientEvents(t, paramsOmit, bind)[0]
	if rec.Args[0] != "123-45-6789" {
		t.Errorf("record: %q", rec.Args)
	}
	if !strings.HasPrefix(hashed.Args[0], "hmac-sha256:") || hashed.Args[0] != again.Args[0] || strings.Contains(hashed.Args[0], "6789") {
		t.Errorf("hash: %q vs %q", hashed.Args, again.Args)
	}
	if omitted.Args != nil || omitted.N != 1 {
		t.Errorf("omit: %+v", omitted)
	}
}

func TestMalformedClientMessages(t *testing.T) {
	frame := func(typ byte, body []byte) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
		return append(b, body...)
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{"query without NUL", frame('Q', []byte("SELECT 1"))},
		{"bind with short parameter", frame('B', []byte("\x00\x00\x00\x00\x00\x01\x00\x00\x00\x09abc"))},
		{"bind with huge format count", frame('B', []byte("\x00\x00\xff\xff"))},
		{"execute without row limit", frame('E', []byte("\x00"))},
		{"unknown type", frame('Z', nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &clientObserver{s: &session{}, red: redactor{policy: paramsRecord}}
			sc := scanner{h: o, maxStream: 1 << 20, maxDecode: 1 << 20}
			_, err := sc.scan(tt.stream)
			ce, ok := asClientError(err)
			if !ok || ce.Code != codeProtocolViolation {
				t.Errorf("err = %v, want a protocol violation", err)
			}
		})
	}
}

func TestTransactionBoundaries(t *testing.T) {
	tests := []struct {
		name   string
		status string // successive ReadyForQuery statuses
		tags   []string
		want   string
	}{
		{"autocommit", "III", nil, ""},
		{"commit", "ITTI", []string{"", "", "COMMIT"}, "begin,commit"},
		{"rollback", "ITI", []string{"", "ROLLBACK"}, "begin,rollback"},
		{"failed then rollback", "ITEI", []string{"", "", "ROLLBACK"}, "begin,failed,rollback"},
		{"begin and fail in one query", "IEI", nil, "begin,failed,rollback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newServerObserver(&session{}, tt.status[0], false, 0, 0)
			for i := 1; i < len(tt.status); i++ {
				if i-1 < len(tt.tags) {
					o.lastTag = tt.tags[i-1]
				}
				o.readyForQuery(tt.status[i])
			}
			var ops []string
			for _, e := range o.evs {
				ops = append(ops, e.Op)
			}
			if got := strings.Join(ops, ","); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseStartup(t *testing.T) {
	msg := func(version uint32, kv ...string) []byte {
		b := binary.BigEndian.AppendUint32(nil, version)
		for _, s := range kv {
			b = append(append(b, s...), 0)
		}
		return append(b, 0)
	}
	st, err := parseStartup(msg(3<<16|2, "user", "alice", "database", "orders/reports", "_pq_.opt", "1", "replication", "database"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Minor != 2 || st.get("user") != "alice" || len(st.Options) != 1 || !replicationRequested(st) {
		t.Errorf("startup = %+v", st)
	}
	if tg, db := parseDBName(st.get("database")); tg != "orders" || db != "reports" {
		t.Errorf("dbname = %q %q", tg, db)
	}
	for _, bad := range [][]byte{
		msg(2 << 16),
		{0, 3, 0, 0, 'u', 's', 'e', 'r'},
		append(msg(3<<16, "user", "alice"), 'x'),
		{0, 3, 0},
	} {
		if _, err := parseStartup(bad); err == nil {
			t.Errorf("parseStartup(%q) accepted", bad)
		}
	}
	st, _ = parseStartup(msg(3<<16, "user", "a", "replication", "off"))
	if replicationRequested(st) {
		t.Error("replication=off treated as replication")
	}
}
