package pgproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-pam/custos/recorder/event"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rowDigest recomputes a pg_result digest from the rows a client
// received: each DataRow body re-encoded as sent (int16 field count, then
// per field an int32 length, -1 for NULL, and the bytes), in order.
func rowDigest(rows [][][]byte) string {
	h := sha256.New()
	for _, r := range rows {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(r)))
		for _, v := range r {
			if v == nil {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
				continue
			}
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// received reads one result the way an inspector holding the rows would.
type received struct {
	cols []string
	rows [][][]byte
}

func readResult(t *testing.T, rr *pgconn.ResultReader) received {
	t.Helper()
	var got received
	for _, f := range rr.FieldDescriptions() {
		got.cols = append(got.cols, strconv.FormatUint(uint64(f.DataTypeOID), 10)+":"+f.Name)
	}
	for rr.NextRow() {
		var row [][]byte
		for _, v := range rr.Values() {
			if v == nil {
				row = append(row, nil)
			} else {
				row = append(row, bytes.Clone(v))
			}
		}
		got.rows = append(got.rows, row)
	}
	if _, err := rr.Close(); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestResultEvidenceDigests(t *testing.T) {
	s := newStack(t)
	tok, _ := s.token("alice")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn := s.connect(t, "alice", tok)
	pc := conn.PgConn()

	// Values the server computes, so they appear in no statement text.
	const q = `SELECT g AS n, md5('custos-evidence-' || g) AS secret, CASE WHEN g % 2 = 0 THEN NULL ELSE now()::date END AS d FROM generate_series(1, 7) g`

	// Simple protocol.
	mrr := pc.Exec(ctx, q)
	if !mrr.NextResult() {
		t.Fatal(mrr.Close())
	}
	simple := readResult(t, mrr.ResultReader())
	if err := mrr.Close(); err != nil {
		t.Fatal(err)
	}
	// Extended protocol, binary results.
	ext := readResult(t, pc.ExecParams(ctx, q+` WHERE g <= $1`, [][]byte{[]byte("5")}, nil, nil, []int16{1}))
	if len(simple.rows) != 7 || len(ext.rows) != 5 {
		t.Fatalf("rows = %d, %d", len(simple.rows), len(ext.rows))
	}

	// COPY TO STDOUT: the client's output is the CopyData bodies in order.
	var out bytes.Buffer
	ct, err := pc.CopyTo(ctx, &out, `COPY (SELECT g, md5('custos-copy-' || g) FROM generate_series(1, 300) g) TO STDOUT`)
	if err != nil || ct.RowsAffected() != 300 {
		t.Fatalf("copy to: %v %v", ct, err)
	}
	// COPY FROM STDIN: the client's input is the CopyData bodies in order.
	if _, err := pc.Exec(ctx, `CREATE TEMP TABLE evidence_in (id int, v text)`).ReadAll(); err != nil {
		t.Fatal(err)
	}
	var in bytes.Buffer
	for i := range 500 {
		fmt.Fprintf(&in, "%d\tcustos-in-%x\n", i, sha256.Sum256([]byte{byte(i)}))
	}
	inBytes := bytes.Clone(in.Bytes())
	ct, err = pc.CopyFrom(ctx, &in, `COPY evidence_in FROM STDIN`)
	if err != nil || ct.RowsAffected() != 500 {
		t.Fatalf("copy from: %v %v", ct, err)
	}
	conn.Close(ctx)
	evs := s.rec.Last(t).WaitClosed(t)

	res := kinds(evs, event.KindPGResult)
	var rowsEv []event.Event
	var copyOut, copyIn *event.Event
	for i, e := range res {
		switch e.Op {
		case "rows":
			if len(e.Args) == 3 {
				rowsEv = append(rowsEv, e)
			}
		case "copy_out":
			copyOut = &res[i]
		case "copy_in":
			copyIn = &res[i]
		}
	}
	if len(rowsEv) != 2 || copyOut == nil || copyIn == nil {
		t.Fatalf("pg_result events:\n%s", dump(res))
	}
	for i, want := range []received{simple, ext} {
		e := rowsEv[i]
		if strings.Join(e.Args, ",") != strings.Join(want.cols, ",") || e.Args[0] != "23:n" || e.Args[1] != "25:secret" || e.Args[2] != "1082:d" {
			t.Errorf("result %d columns = %q, client saw %q", i, e.Args, want.cols)
		}
		if e.N != int64(len(want.rows)) || e.Text != rowDigest(want.rows) {
			t.Errorf("result %d: recorded %d rows digest %s; client received %d rows digest %s", i, e.N, e.Text, len(want.rows), rowDigest(want.rows))
		}
	}
	if sum := sha256.Sum256(out.Bytes()); copyOut.Text != hex.EncodeToString(sum[:]) || copyOut.N != 300 || copyOut.Bytes != int64(out.Len()) {
		t.Errorf("copy_out = %s; client received %d bytes, sha256 %x", dump([]event.Event{*copyOut}), out.Len(), sum)
	}
	if sum := sha256.Sum256(inBytes); copyIn.Text != hex.EncodeToString(sum[:]) || copyIn.Bytes != int64(len(inBytes)) {
		t.Errorf("copy_in = %s; client sent %d bytes, sha256 %x", dump([]event.Event{*copyIn}), len(inBytes), sum)
	}

	// Without record_results no returned or copied value is in the recording.
	var secrets []string
	for _, r := range append(simple.rows, ext.rows...) {
		if r[1] != nil {
			secrets = append(secrets, string(r[1]))
		}
	}
	secrets = append(secrets, strings.Fields(out.String())[1], "custos-in-")
	if kinds(evs, event.KindPGRow) != nil {
		t.Error("pg_row events recorded with record_results off")
	}
	for _, e := range evs {
		all := append([]string{e.Text, e.Name, e.Op, string(e.Data)}, e.Args...)
		for _, v := range all {
			for _, sec := range secrets {
				if strings.Contains(v, sec) {
					t.Errorf("row value %q recorded in a %v event", sec, e.Kind)
				}
			}
		}
	}
}

// TestResultEvidencePerExecute checks that a suspended portal gets one
// pg_result per Execute, each over the rows that Execute returned.
// Rows recorded (record_results) are hashed whole, others as streamed.
func TestResultEvidencePerExecute(t *testing.T) {
	for _, results := range []bool{false, true} {
		t.Run(fmt.Sprint("results=", results), func(t *testing.T) { perExecute(t, results) })
	}
}

func perExecute(t *testing.T, results bool) {
	o := newServerObserver(&session{}, 'I', results, 0, 0)
	var stream []byte
	enc := func(m pgproto3.BackendMessage) {
		var err error
		if stream, err = m.Encode(stream); err != nil {
			t.Fatal(err)
		}
	}
	enc(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("id"), DataTypeOID: 20, DataTypeSize: 8, Format: 1}}})
	rows := [][][]byte{{[]byte("1")}, {[]byte("2")}, {nil}}
	enc(&pgproto3.DataRow{Values: rows[0]})
	enc(&pgproto3.DataRow{Values: rows[1]})
	enc(&pgproto3.PortalSuspended{})
	enc(&pgproto3.DataRow{Values: rows[2]})
	enc(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	sc := scanner{h: o, maxStream: 1 << 20, maxDecode: 1 << 20}
	// Three bytes at a time: bodies arrive in pieces.
	var pend []byte
	for i := 0; i < len(stream); i += 3 {
		pend = append(pend, stream[i:min(i+3, len(stream))]...)
		n, err := sc.scan(pend)
		if err != nil {
			t.Fatal(err)
		}
		pend = pend[n:]
	}
	if len(pend) != 0 {
		t.Fatalf("%d bytes not scanned", len(pend))
	}
	res := kinds(o.evs, event.KindPGResult)
	if len(res) != 2 || res[0].N != 2 || res[0].Text != rowDigest(rows[:2]) || res[1].N != 1 || res[1].Text != rowDigest(rows[2:]) ||
		strings.Join(res[0].Args, ",") != "20:id" || strings.Join(res[1].Args, ",") != "20:id" {
		t.Fatalf("pg_result per Execute:\n%s", dump(o.evs))
	}
}
