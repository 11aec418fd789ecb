// Package devstack starts the real components Custos talks to — PostgreSQL 15,
// OpenSSH sshd, MinIO and a Vault dev server — on loopback, for integration
// tests and for the local stack behind `make up`.
//
// In tests, route TestMain through Main so every process started is stopped
// even when tests fail or panic:
//
//	func TestMain(m *testing.M) { os.Exit(devstack.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		pg := devstack.StartPostgres(t)
//		dsn := pg.DSN(pg.CreateDatabase(t, "something"))
//		...
//	}
//
// PostgreSQL, MinIO and Vault are shared by all tests of one test binary;
// each StartSSHD call starts its own sshd. Components are found with ToolPath
// ($CUSTOS_TOOLS_BIN, then the tool cache filled by deploy/dev/install.sh,
// then $PATH). A missing component skips the test with an install hint, or
// fails it when CI=true.
//
// Every process runs in its own process group with a parent-death signal,
// so a test binary that dies (timeout, crash) takes its components with it.
//
// The Vault bootstrap (engines, roles, policies) has one definition,
// deploy/vault/bootstrap.sh, which both `make up` and Vault.Bootstrap run.
package devstack
