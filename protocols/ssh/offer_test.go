package sshproxy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// kexInitPacket builds an unencrypted binary packet carrying a KEXINIT
// that offers ciphers (both directions) and the client profile otherwise.
func kexInitPacket(ciphers ...string) []byte {
	m := kexInitMsg{
		KexAlgos: []string{ssh.KeyExchangeCurve25519}, ServerHostKeyAlgos: []string{ssh.KeyAlgoED25519},
		CiphersClientServer: ciphers, CiphersServerClient: ciphers,
		MACsClientServer: []string{ssh.HMACSHA256ETM}, MACsServerClient: []string{ssh.HMACSHA256ETM},
		CompressionClientServer: []string{"none"}, CompressionServerClient: []string{"none"},
	}
	return packetOf(ssh.Marshal(&m))
}

// packetOf frames a payload as an unencrypted binary packet.
func packetOf(payload []byte) []byte {
	pad := 8 - (len(payload)+5)%8
	if pad < 4 {
		pad += 8
	}
	p := binary.BigEndian.AppendUint32(nil, uint32(1+len(payload)+pad))
	p = append(p, byte(pad))
	p = append(p, payload...)
	return append(p, make([]byte, pad)...)
}

func TestParseClientHello(t *testing.T) {
	kex := kexInitPacket(ssh.CipherAES128CTR, ssh.CipherAES128GCM)
	hello := append([]byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), kex...)
	m, err := parseClientHello(hello)
	if err != nil || !slices.Equal(m.CiphersServerClient, []string{ssh.CipherAES128CTR, ssh.CipherAES128GCM}) {
		t.Fatalf("whole hello: %+v, %v", m, err)
	}
	for i := range len(hello) - 1 {
		if _, err := parseClientHello(hello[:i]); err != errNeedMore {
			t.Fatalf("hello cut at %d: %v, want errNeedMore", i, err)
		}
	}
	if m, err := parseClientHello(append([]byte("a line before\r\n"), hello...)); err != nil || m == nil {
		t.Errorf("line before the identification: %v", err)
	}
	// The bytes after the KEXINIT (a guessed key exchange packet) are not
	// its business.
	if _, err := parseClientHello(append(slices.Clone(hello), 0, 0, 0, 12)); err != nil {
		t.Errorf("trailing packet: %v", err)
	}
	bad := map[string][]byte{
		"not a KEXINIT":    append([]byte("SSH-2.0-x\r\n"), 0, 0, 0, 12, 10, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		"huge length":      append([]byte("SSH-2.0-x\r\n"), 0xff, 0xff, 0xff, 0xff, 4),
		"padding too long": append([]byte("SSH-2.0-x\r\n"), 0, 0, 0, 5, 200, 20, 0, 0, 0),
		"truncated lists":  append([]byte("SSH-2.0-x\r\n"), 0, 0, 0, 10, 4, 20, 1, 2, 3, 4, 5, 6, 7, 8),
	}
	for name, b := range bad {
		if _, err := parseClientHello(b); err != errNotKexInit {
			t.Errorf("%s: %v, want errNotKexInit", name, err)
		}
	}
}

func TestFitCiphers(t *testing.T) {
	gcm := []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	cases := []struct {
		c2s, s2c []string
		want     []string
	}{
		{[]string{"chacha20-poly1305@openssh.com", "aes128-ctr", "aes128-gcm@openssh.com"}, nil, gcm},
		{[]string{"aes256-gcm@openssh.com"}, nil, gcm},
		{[]string{"aes128-ctr", "aes256-ctr", "aes128-cbc"}, nil, clientCiphers},
		{[]string{"aes128-gcm@openssh.com"}, []string{"aes128-ctr"}, clientCiphers},
	}
	for _, tc := range cases {
		s2c := tc.s2c
		if s2c == nil {
			s2c = tc.c2s
		}
		if got := fitCiphers(&kexInitMsg{CiphersClientServer: tc.c2s, CiphersServerClient: s2c}); !slices.Equal(got, tc.want) {
			t.Errorf("%v/%v: %v, want %v", tc.c2s, s2c, got, tc.want)
		}
	}
	if got := fitCiphers(nil); !slices.Equal(got, clientCiphers) {
		t.Errorf("no KEXINIT: %v", got)
	}
}

// serverKexInit connects to the proxy as a raw client, sends hello (after
// waiting wait), and returns the proxy's identification and KEXINIT.
func serverKexInit(t *testing.T, port int, wait time.Duration, hello []byte) (string, *kexInitMsg, time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	r := bufio.NewReader(c)
	ident, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(wait)
	if hello != nil {
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
	}
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatalf("reading the proxy's KEXINIT: %v", err)
	}
	took := time.Since(start)
	body := make([]byte, binary.BigEndian.Uint32(hdr[:4])-1)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	var m kexInitMsg
	if err := ssh.Unmarshal(body[:len(body)-int(hdr[4])], &m); err != nil {
		t.Fatal(err)
	}
	return ident, &m, took
}

// TestCipherOfferFitsClient reads what the proxy offers on the wire: AES-GCM
// alone to a client that speaks it, the whole profile to one that does
// not, and the whole profile, after a short wait, to a client that waits
// for the server's KEXINIT before sending its own.
func TestCipherOfferFitsClient(t *testing.T) {
	e := newEnv(t)
	version := []byte("SSH-2.0-OpenSSH_9.2p1\r\n")
	ident, m, _ := serverKexInit(t, e.port, 0, append(slices.Clone(version), kexInitPacket(ssh.CipherChaCha20Poly1305, ssh.CipherAES128CTR, ssh.CipherAES128GCM)...))
	if ident != serverVersion+"\r\n" {
		t.Errorf("identification %q", ident)
	}
	if want := []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}; !slices.Equal(m.CiphersServerClient, want) || !slices.Equal(m.CiphersClientServer, want) {
		t.Errorf("AES-GCM client offered %v / %v", m.CiphersClientServer, m.CiphersServerClient)
	}
	if !slices.Contains(m.KexAlgos, "kex-strict-s-v00@openssh.com") {
		t.Errorf("strict key exchange not offered: %v", m.KexAlgos)
	}
	_, m, _ = serverKexInit(t, e.port, 0, append(slices.Clone(version), kexInitPacket(ssh.CipherAES128CTR, "aes128-cbc")...))
	if !slices.Equal(m.CiphersServerClient, clientCiphers) || !slices.Equal(m.MACsServerClient, clientMACs) {
		t.Errorf("AES-CTR client offered %v %v", m.CiphersServerClient, m.MACsServerClient)
	}
	_, m, took := serverKexInit(t, e.port, 0, version)
	if !slices.Equal(m.CiphersServerClient, clientCiphers) {
		t.Errorf("waiting client offered %v", m.CiphersServerClient)
	}
	if took < kexPeekTimeout-100*time.Millisecond || took > kexPeekTimeout+3*time.Second {
		t.Errorf("waiting client got the KEXINIT after %s, want about %s", took, kexPeekTimeout)
	}
}

func TestHelloConnLeavesOutIdentification(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := &helloConn{Conn: a, replay: []byte("client bytes"), unsent: []byte(serverVersion + "\r\n")}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 5)
		n, _ := io.ReadFull(b, buf)
		got <- buf[:n]
	}()
	// Split across writes, then more data.
	if _, err := c.Write([]byte(serverVersion[:4])); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write([]byte(serverVersion[4:] + "\r\nhello")); err != nil || n != len(serverVersion)-4+7 {
		t.Fatalf("write: %d %v", n, err)
	}
	if g := <-got; string(g) != "hello" {
		t.Errorf("peer read %q", g)
	}
	buf := make([]byte, 64)
	if n, _ := c.Read(buf); string(buf[:n]) != "client bytes" {
		t.Errorf("replayed %q", buf[:n])
	}
	c2 := &helloConn{Conn: a, unsent: []byte(serverVersion + "\r\n")}
	if _, err := c2.Write([]byte("SSH-2.0-Other\r\n")); !errors.Is(err, errIdentMismatch) {
		t.Errorf("another identification: %v", err)
	}
}

// FuzzClientHello feeds arbitrary client bytes to the parser that reads
// them before the handshake: it must not panic, and a KEXINIT it accepts
// re-encodes to a payload it accepts again.
func FuzzClientHello(f *testing.F) {
	f.Add([]byte("SSH-2.0-OpenSSH_9.2p1\r\n"), kexInitPacket(ssh.CipherAES128CTR, ssh.CipherAES128GCM))
	f.Add([]byte("banner\r\nSSH-2.0-paramiko_2.12.0\r\n"), kexInitPacket(ssh.CipherAES128CTR))
	f.Add([]byte("SSH-2.0-x\n"), []byte{0, 0, 0, 12, 4, 20, 0, 0})
	f.Add([]byte("SSH-2.0-x\n"), []byte{0xff, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, ident, packet []byte) {
		b := append(slices.Clone(ident), packet...)
		m, err := parseClientHello(b)
		if err != nil {
			if m != nil {
				t.Fatal("message with an error")
			}
			return
		}
		if offer := fitCiphers(m); len(offer) == 0 {
			t.Fatal("empty offer")
		}
		again, err := parseClientHello(append([]byte("SSH-2.0-x\r\n"), packetOf(ssh.Marshal(m))...))
		if err != nil {
			t.Fatalf("re-encoded KEXINIT: %v", err)
		}
		if !slices.Equal(again.CiphersClientServer, m.CiphersClientServer) || !slices.Equal(again.CiphersServerClient, m.CiphersServerClient) {
			t.Fatalf("re-encoded KEXINIT differs: %+v, %+v", m, again)
		}
	})
}
