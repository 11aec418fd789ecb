// Package audit appends to and verifies the hash-chained audit log kept in
// the state store. Every decision the broker makes becomes one
// broker.AuditRecord whose hash covers the previous record's hash, so an
// altered, inserted or removed record breaks the chain from that point on;
// Verify walks the chain and names the first broken record.
//
// Because whoever can write the store can also recompute the chain, a
// Checkpointer writes signed checkpoints of it into a CheckpointStore
// outside the store (the write-once recordings bucket), and a Verifier
// compares the chain with every checkpoint and names the first record that
// disagrees. The package declares the CheckpointStore and Signer it needs;
// the recorder implements them.
package audit
