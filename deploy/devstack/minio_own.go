package devstack

import (
	"sync"
	"testing"
	"time"
)

// OwnMinIO is a MinIO server started for one test, which the test may
// stop and start again on the same address and data directory: to its
// clients, an object store that goes away and comes back with what it
// held. Its bucket credentials stay the same across restarts.
type OwnMinIO struct {
	*MinIO
	opts minioOptions
	mu   sync.Mutex
	p    *process // nil while stopped
}

// StartOwnMinIO starts a MinIO server of the test's own (not the shared
// one StartMinIO returns); it stops when the test ends.
func StartOwnMinIO(tb testing.TB) *OwnMinIO {
	tb.Helper()
	bin, err := ToolPath("minio")
	if err != nil {
		unavailable(tb, "minio not found; "+InstallHint)
	}
	dir, err := workDir("minio-own")
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	m := &OwnMinIO{opts: minioOptions{bin: bin, dir: dir, port: FreePort(tb),
		accessKey: "custos" + randomToken(4), secretKey: randomToken(16)}}
	m.Start(tb)
	tb.Cleanup(func() { m.Stop(tb) })
	return m
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s); its data stays.
func (m *OwnMinIO) Stop(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p == nil {
		return
	}
	m.p.stop(10 * time.Second)
	unregister(m.p)
	m.p = nil
}

// Start starts the stopped server again on its address and data, and
// waits until it is ready.
func (m *OwnMinIO) Start(tb testing.TB) {
	tb.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		return
	}
	srv, p, err := launchMinIO(m.opts)
	if err != nil {
		tb.Fatalf("devstack: %v", err)
	}
	if m.MinIO == nil {
		m.MinIO = srv
	}
	m.p = p
}
