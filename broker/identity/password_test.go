package identity

import (
	"regexp"
	"strings"
	"testing"
)

func TestHashPasswordFormat(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=2\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("unexpected PHC string %q", h)
	}
	ok, err := VerifyPassword(h, "correct horse")
	if err != nil || !ok {
		t.Fatalf("verify own hash: %v %v", ok, err)
	}
	h2, _ := HashPassword("correct horse")
	if h2 == h {
		t.Fatal("two hashes of one password are identical: salt is not random")
	}
	if _, err := HashPassword(""); err == nil {
		t.Fatal("an empty password was hashed")
	}
}

func TestVerifyPassword(t *testing.T) {
	// The argon2 reference implementation's argon2id test vector.
	const reference = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	cheap := cheapHash(t, "s3cret!")
	parts := strings.Split(cheap, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	tests := []struct {
		name    string
		hash    string
		pw      string
		ok      bool
		wantErr bool
	}{
		{name: "reference vector", hash: reference, pw: "password", ok: true},
		{name: "reference vector, wrong password", hash: reference, pw: "Password"},
		{name: "right password", hash: cheap, pw: "s3cret!", ok: true},
		{name: "wrong password", hash: cheap, pw: "s3cret"},
		{name: "empty password", hash: cheap, pw: ""},
		{name: "password with a suffix", hash: cheap, pw: "s3cret!!"},
		{name: "tampered hash", hash: with(5, strings.Repeat("A", 43)), pw: "s3cret!"},
		{name: "other salt", hash: with(4, "c29tZXNhbHRzb21lc2FsdA"), pw: "s3cret!"},
		{name: "argon2i is refused", hash: with(1, "argon2i"), pw: "s3cret!", wantErr: true},
		{name: "bcrypt is refused", hash: "$2y$10$abcdefghijklmnopqrstuuD4xqBwVJ9d3Cj9Gm/4bX7GxqLBvb5Ri", pw: "x", wantErr: true},
		{name: "old version", hash: with(2, "v=16"), pw: "s3cret!", wantErr: true},
		{name: "missing field", hash: strings.Join(parts[:5], "$"), pw: "s3cret!", wantErr: true},
		{name: "spaces in parameters", hash: with(3, "m=64, t=1, p=1"), pw: "s3cret!", wantErr: true},
		{name: "reordered parameters", hash: with(3, "t=1,m=64,p=1"), pw: "s3cret!", wantErr: true},
		{name: "memory bomb", hash: with(3, "m=4194304,t=1,p=1"), pw: "s3cret!", wantErr: true},
		{name: "too many passes", hash: with(3, "m=64,t=1000,p=1"), pw: "s3cret!", wantErr: true},
		{name: "zero lanes", hash: with(3, "m=64,t=1,p=0"), pw: "s3cret!", wantErr: true},
		{name: "memory below 8 per lane", hash: with(3, "m=8,t=1,p=2"), pw: "s3cret!", wantErr: true},
		{name: "padded base64 salt", hash: with(4, parts[4]+"=="), pw: "s3cret!", wantErr: true},
		{name: "short hash", hash: with(5, "AAAA"), pw: "s3cret!", wantErr: true},
		{name: "empty string", hash: "", pw: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword(tt.hash, tt.pw)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if err != nil && len(tt.hash) > 20 && strings.Contains(err.Error(), tt.hash[len(tt.hash)-20:]) {
				t.Fatalf("error quotes the hash: %v", err)
			}
		})
	}
}
