package pgproxy

import (
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// tcpPair is a loopback TCP connection: the copier's end (wrapped as the
// proxy wraps accepted connections) and the peer's.
func tcpPair(t *testing.T) (mine net.Conn, peer net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	mine, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mine.Close(); peer.Close() })
	return direct(mine), peer
}

// TestRelayRoundTripAllocations bounds the allocations of the relay's hot
// path, socket to socket: none for a query's answer; for the client's
// messages only what the recording keeps (the query text; a Bind's
// parameter list and value).
func TestRelayRoundTripAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	so := newServerObserver(&session{}, 'I', false, 0, 0)
	resetServer := func() error { so.evs = so.evs[:0]; return nil }
	co := &clientObserver{s: &session{}, red: redactor{policy: paramsRecord}, limit: 1 << 20}
	resetClient := func() error { co.evs = co.evs[:0]; return nil }
	query := encode(t, &pgproto3.Query{String: "SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"})
	prepared := encode(t,
		&pgproto3.Bind{PreparedStatement: "P0_1", Parameters: [][]byte{[]byte("4711")}},
		&pgproto3.Execute{},
		&pgproto3.Sync{})
	for _, tt := range []struct {
		name  string
		h     frameHandler
		reset func() error
		msg   []byte
		max   float64
	}{
		{"select answer", so, resetServer, selectResponse(t), 0},
		{"simple query", co, resetClient, query, 1},
		{"bind execute sync", co, resetClient, prepared, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src, srcPeer := tcpPair(t)
			dst, dstPeer := tcpPair(t)
			c := newCopier(src, dst, tt.h, maxServerMessage, defaultMaxMessage)
			c.flush = tt.reset
			done := make(chan error, 1)
			go func() { done <- c.run() }()
			defer func() { srcPeer.Close(); <-done }()
			got := make([]byte, len(tt.msg))
			round := func() {
				if _, err := srcPeer.Write(tt.msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(dstPeer, got); err != nil {
					t.Fatal(err)
				}
			}
			for range 50 {
				round() // warm up: intern names, size the event slices
			}
			if allocs := testing.AllocsPerRun(500, round); allocs > tt.max {
				t.Errorf("%v allocations per round, want at most %v", allocs, tt.max)
			}
		})
	}
}
