// Package sshproxy is the SSH proxy: it terminates OpenSSH clients with
// golang.org/x/crypto/ssh, identifies the user by a registered public key or
// a certificate from the broker's user CA, checks for an active grant on the
// target named in the login (TARGET or LOGIN@TARGET), connects upstream with
// a short-lived certificate, and relays shells, commands, SFTP, scp and rsync
// while recording every channel. File-transfer observers (scp, SFTP) add
// file events on top of the record; they never decide that bytes go
// unrecorded (see fileChannel). Port, agent and X11 forwarding are refused
// unless a role allows local port forwarding.
//
// The proxy depends only on the small interfaces it declares (identities,
// grants, targets, credentials, recorder, auditor); cmd/custos/app passes in
// the implementations. Every live session is tracked so that revoking a grant
// or terminating a session closes it within a second, with a message on the
// user's terminal.
//
// A connection goes through: accept → identify → authorize (optionally
// holding at the banner until a grant appears) → dial upstream with injected
// credentials → start recording (fail-closed) → relay → tear down in the
// order upstream exit-status, drain output, CloseWrite, Close → final event →
// untrack.
package sshproxy
