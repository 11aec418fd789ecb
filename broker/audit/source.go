package audit

import "net"

// SourceAddr is a client address as audit records name it: the host of a
// "host:port" remote address (an HTTP request's RemoteAddr), or the
// address unchanged when it has no port. The HTTP API and the Slack
// interaction endpoint both use it for WithSource.
func SourceAddr(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}
