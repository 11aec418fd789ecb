// Package proxyproto owns the PROXY protocol (versions 1 and 2) that a
// TCP load balancer puts in front of a connection to pass on the client's
// address. The SSH and PostgreSQL proxies read headers through it where
// protocols/lifecycle accepts their connections, believing only the
// trusted proxies of broker/proxytrust (the set the HTTP server also
// takes X-Forwarded-For from).
//
// A header is believed only from a trusted proxy; a connection from a
// trusted proxy without a valid header, and a connection from any other
// address that starts with a header, are refused. A header is read
// within a deadline and a size bound, and never a byte past it.
package proxyproto
