// Package pgproxy is the PostgreSQL proxy: it speaks the v3 wire protocol to
// clients (psql, pgbench, drivers) and to the target, authenticates the client
// with a short-lived connection token, logs in upstream with credentials
// issued for the user's grant, and relays every message while recording
// statements, bind parameters (redacted per target), command tags, errors,
// COPY traffic and transaction boundaries.
//
// The relay forwards raw bytes: a small frame parser reads each message's
// five-byte header, streams bulk messages (DataRow, CopyData) through without
// copying them out of the read buffer, and decodes only the messages it
// records. Recording is batched and never blocks the relay unless the
// recorder falls far behind; a recorder failure ends the session (fail
// closed) unless the target is configured to fail open.
//
// For roles with statement guardrails (guardrail.go, classification in
// package guard) the client→server side reads whole messages, classifies
// every statement with PostgreSQL's own grammar, and forwards, replaces
// (deny) or holds each one for an approver; other roles keep the raw relay.
//
// The proxy depends only on the small interfaces declared in this package:
// an authenticator for tokens, a credential issuer, a recorder and an audit
// sink. Live sessions are tracked so a revoked or expired grant ends them
// within a second with FATAL "access revoked: <reason>".
package pgproxy
