// Package e2e holds end-to-end tests of features whose tests need parts
// from several trees wired together the way cmd/custos/app wires them, so
// that no package under broker/ imports the recorder, a proxy, Slack or
// the web server even in its tests. The break-glass suite runs the
// service with the real Vault, PostgreSQL, recorder, PostgreSQL proxy and
// a Slack emulator.
package e2e
