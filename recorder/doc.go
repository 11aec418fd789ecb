// Package recorder records proxied sessions as durable, encrypted,
// tamper-evident recordings. A Recorder hands each session a Writer that the
// proxies call from their relay goroutines; events are encoded into a
// buffer, sealed into compressed, encrypted chunks (at 4 MiB or 1 s) and
// synced into a local spool by background goroutines (appends wait only
// when a bounded number of chunks is not yet durable), then uploaded in
// the background to an object store under Object Lock. Closing a session writes a manifest signed with the broker's
// Ed25519 key, whose hash goes to the audit log and the session index.
// After a crash, a new Recorder uploads what the spool holds and closes the
// sessions that died as interrupted. Verify checks a stored recording
// without decrypting it; Open reads one, as an audited action. Subscribe
// follows a running session live: its recent terminal output and events,
// then each event as it is recorded (live.go).
//
// The stored format is specified in docs/recording-format.md.
package recorder
