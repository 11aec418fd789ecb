// Package audit appends to and verifies the hash-chained audit log kept in
// the state store. Every decision the broker makes becomes one
// broker.AuditRecord whose hash covers the previous record's hash, so an
// altered, inserted or removed record breaks the chain from that point on;
// Verify walks the chain and names the first broken record.
package audit
