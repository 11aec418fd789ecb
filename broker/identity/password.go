package identity

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// passwordParams are argon2id cost parameters.
type passwordParams struct {
	// Memory in KiB, Time (passes) and Threads (parallelism).
	Memory  uint32
	Time    uint32
	Threads uint8
	// SaltLen and KeyLen in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// defaultPasswordParams are what HashPassword uses: 64 MiB, 3 passes, 2
// lanes, a 16-byte salt and a 32-byte hash.
var defaultPasswordParams = passwordParams{Memory: 64 * 1024, Time: 3, Threads: 2, SaltLen: 16, KeyLen: 32}

// Bounds a PHC string must stay within, so a hash in the config cannot
// make every sign-in allocate gigabytes or spin for minutes.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
)

var phcB64 = base64.RawStdEncoding

// HashPassword returns an argon2id PHC string for pw with the default
// parameters: $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>.
func HashPassword(pw string) (string, error) {
	return hashPassword(pw, defaultPasswordParams)
}

func hashPassword(pw string, p passwordParams) (string, error) {
	if pw == "" {
		return "", errors.New("hash password: password is empty")
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		phcB64.EncodeToString(salt), phcB64.EncodeToString(key)), nil
}

// passwordHash is a parsed PHC string.
type passwordHash struct {
	params passwordParams
	salt   []byte
	key    []byte
}

// parsePasswordHash parses an argon2id PHC string. Errors never quote the
// string, which is secret material.
func parsePasswordHash(s string) (passwordHash, error) {
	var h passwordHash
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return h, errors.New("password hash: not a PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)")
	}
	if parts[1] != "argon2id" {
		return h, fmt.Errorf("password hash: algorithm %q is not argon2id", parts[1])
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return h, fmt.Errorf("password hash: version must be v=%d", argon2.Version)
	}
	var m, t, p uint64
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || n != 3 ||
		parts[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, p) {
		return h, errors.New("password hash: parameters must be m=<KiB>,t=<passes>,p=<lanes>")
	}
	if p < 1 || p > 255 || t < 1 || t > maxTime || m < 8*p || m > maxMemoryKiB {
		return h, fmt.Errorf("password hash: parameters out of range (1 <= p <= 255, 1 <= t <= %d, 8*p <= m <= %d)", maxTime, maxMemoryKiB)
	}
	salt, err := phcB64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return h, errors.New("password hash: salt must be 8 to 64 bytes of unpadded base64")
	}
	key, err := phcB64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 128 {
		return h, errors.New("password hash: hash must be 16 to 128 bytes of unpadded base64")
	}
	h.params = passwordParams{Memory: uint32(m), Time: uint32(t), Threads: uint8(p), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))}
	h.salt, h.key = salt, key
	return h, nil
}

// verify reports whether pw matches, comparing in constant time.
func (h passwordHash) verify(pw string) bool {
	got := argon2.IDKey([]byte(pw), h.salt, h.params.Time, h.params.Memory, h.params.Threads, h.params.KeyLen)
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// dummy returns a hash with h's parameters and random salt and key, which
// no password matches in practice, for spending the time of a real check.
func (h passwordHash) dummy() passwordHash {
	d := passwordHash{params: h.params, salt: make([]byte, h.params.SaltLen), key: make([]byte, h.params.KeyLen)}
	rand.Read(d.salt)
	rand.Read(d.key)
	return d
}

// VerifyPassword reports whether pw matches the argon2id PHC string
// encoded. A malformed hash is an error, never a match.
func VerifyPassword(encoded, pw string) (bool, error) {
	h, err := parsePasswordHash(encoded)
	if err != nil {
		return false, err
	}
	return h.verify(pw), nil
}
