// Package auditlog writes and verifies mcpgate's tamper-evident audit log:
// JSON lines chained by SHA-256, optionally signed with Ed25519.
//
// # Line format
//
// Every line is one JSON object whose last members are the chain fields,
// always in this order and always at the end of the line:
//
//		{<payload members>,"seq":N,"prev":"<64 hex>"[,"key":"<16 hex>","sig":"<88 base64>"],"hash":"<64 hex>"}\n
//
//	  - seq counts records from 1, across restarts and rotated files.
//	  - prev is the hash member of the record before (64 zeros for seq 1).
//	  - hash is SHA-256 over the line's exact bytes before `,"hash":"`.
//	  - sig, when present, is Ed25519 (RFC 8032, pure Ed25519) over the
//	    line's exact bytes before `,"sig":"`; key is the first 8 bytes of
//	    SHA-256 of the raw 32-byte public key, in hex.
//
// The hash and the signature are over bytes as written, so no canonical
// re-serialisation is needed to check them and a verifier in any language
// can slice the line at the markers. JSON string escaping guarantees the
// markers cannot occur inside a payload value (a quote inside a string is
// always written \").
//
// # Records the writer adds
//
// Payload lines come from the gateway. The writer adds its own records,
// named by a "kind" member: "start" (a new chain: seq 1), "restart" (a
// process continued the chain of an existing file; it names a torn last
// line it found), "checkpoint" (a signature after an interval without
// one), "rotate" (the last record of a file before rotation) and "stop"
// (a clean shutdown). start, restart, rotate and stop are signed whenever
// a key is configured, and declare the signing policy (sign_every).
package auditlog
