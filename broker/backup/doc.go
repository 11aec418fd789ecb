// Package backup writes and restores backups of a broker: a consistent
// snapshot of the state store, the audit chain head it reaches, and the
// key files a restored broker needs, wrapped under a passphrase.
//
// A backup is a directory:
//
//	manifest.json   what the backup holds: time, source driver, audit
//	                chain head, and every file with its size, rows and SHA-256
//	manifest.sig    Ed25519 signature of manifest.json by the broker's
//	                recording signing key (the key in keys.enc)
//	keys.enc        the key files and a random data key, sealed with
//	                XChaCha20-Poly1305 under a key derived from the
//	                passphrase with Argon2id
//	requests.jsonl.enc, grants.jsonl.enc, tokens.jsonl.enc,
//	sessions.jsonl.enc, audit.jsonl.enc, state.jsonl.enc
//	                the store's rows, one JSON object a line, all read in
//	                one read transaction, encrypted with the data key in
//	                chunks (stream.go)
//
// Restore trusts nothing before it has checked everything: the passphrase
// opens keys.enc (the AEAD authenticates it), the signing key inside
// verifies manifest.sig, the manifest's hashes check every file, every
// chunk must decrypt, and the audit rows must form an intact chain ending
// exactly at the recorded head. Only then is anything written, the rows in one transaction.
//
// Recordings are not copied: they live in the Object Lock bucket, which
// is their own durable, immutable copy. A restore drill verifies them
// against the restored store.
package backup
