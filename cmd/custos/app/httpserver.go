package app

import (
	"net/http"
	"time"
)

// httpIdleTimeout is how long the broker keeps a keep-alive HTTP
// connection nobody sends a request on. Without one, every client that
// stops using a connection without closing it (a load balancer's pool, a
// CLI's leftover transport, a scraper that opened a second connection
// once) holds a descriptor and a goroutine for as long as the broker
// runs. Websockets (live view, replay) are not idle connections: they
// are not affected.
const httpIdleTimeout = 2 * time.Minute

// newHTTPServer is the broker's HTTP server for h: request headers
// within 10 s, idle keep-alive connections closed after idle.
func newHTTPServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
}
