// Package lifecycle is what the SSH and PostgreSQL proxies share around
// their wire handling: the accept loop, tracking of connections and
// sessions, admission, the timers that end a session, recording start and
// the audit records of a session's life.
//
// A proxy builds a Core with a handler for one accepted connection. The
// handler identifies and authorizes the client on its wire, then:
//
//  1. Open tracks the session from the moment its grant is known, so a
//     revocation reaches a session whose upstream login is still in flight;
//  2. the proxy logs in upstream within the session's context;
//  3. StartRecording starts the recording (fail-closed unless the target
//     fails open; that choice is made here and nowhere else);
//  4. Admit re-checks the grant by its ID, then starts the grant-end timer,
//     the idle watcher and the watch on the recording, and audits
//     session.start. Only then may a client byte reach the target;
//  5. the proxy relays until the session's context ends, and Finish
//     records the end, audits session.end and untracks the session.
//
// A session refused after Open ends with Refuse. A session ended by the
// broker carries a *Cause, which each proxy shows in its wire's terms.
// Besides grant events (WatchGrants), the Core re-checks every live
// session's grant by its ID on a resync event and every SessionSweep, so
// a missed event costs seconds, not the rest of the grant. Refusals of
// clients that never proved who they are go through Options.Rejections,
// and every name a client chose is recorded escaped and bounded.
// Both protocols audit session.start, session.end, session.refused,
// session.terminate and session.record_fail_open, with the same detail keys
// (protocol, session_id, grant_id, client_addr).
package lifecycle
