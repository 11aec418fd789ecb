package config

import (
	"os"
	"strings"
	"testing"
)

func TestAdvertiseURL(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name")
	}
	for _, tc := range []struct {
		name, listen, want, wantErr string
	}{
		{name: "default from loopback http", listen: `{http: "127.0.0.1:9090"}`, want: "http://127.0.0.1:9090"},
		{name: "https with a certificate", listen: `{http: "127.0.0.1:8443", tls_cert: c.pem, tls_key: k.pem}`, want: "https://127.0.0.1:8443"},
		{name: "host name for all interfaces", listen: `{http: "0.0.0.0:8443", tls_cert: c.pem, tls_key: k.pem}`, want: "https://" + host + ":8443"},
		{name: "empty host", listen: `{http: ":8443", tls_cert: c.pem, tls_key: k.pem}`, want: "https://" + host + ":8443"},
		{name: "set", listen: `{http: "127.0.0.1:8443", advertise_url: "https://custos-a.internal:8443"}`, want: "https://custos-a.internal:8443"},
		{name: "path refused", listen: `{advertise_url: "https://custos-a.internal:8443/custos"}`, wantErr: "listen.advertise_url"},
		{name: "scheme refused", listen: `{advertise_url: "ftp://custos-a.internal"}`, wantErr: "listen.advertise_url"},
		{name: "credentials refused", listen: `{advertise_url: "https://u:p@custos-a.internal"}`, wantErr: "listen.advertise_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte("listen: " + tc.listen + "\n" + minimal))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Listen.AdvertiseURL != tc.want {
				t.Fatalf("advertise_url = %q, want %q", c.Listen.AdvertiseURL, tc.want)
			}
		})
	}
}
