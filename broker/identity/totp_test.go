package identity

import (
	"context"
	"encoding/base32"
	"errors"
	"testing"
	"time"
)

// rfcKey is the RFC 6238 Appendix B SHA-1 seed.
var rfcKey = []byte("12345678901234567890")

func TestTOTPRFC6238Vectors(t *testing.T) {
	tests := []struct {
		unix int64
		code string // 8 digits, as in the RFC
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	}
	for _, tt := range tests {
		at := time.Unix(tt.unix, 0)
		if got := hotp(rfcKey, uint64(totpCounter(at)), 8); got != tt.code {
			t.Errorf("T=%d: 8-digit code %s, want %s", tt.unix, got, tt.code)
		}
		// Six digits are the same number modulo 10^6.
		if got := TOTP(rfcKey, at); got != tt.code[2:] {
			t.Errorf("T=%d: 6-digit code %s, want %s", tt.unix, got, tt.code[2:])
		}
		step, ok := checkTOTP(rfcKey, tt.code[2:], at)
		if !ok || step != totpCounter(at) {
			t.Errorf("T=%d: checkTOTP = %d, %v", tt.unix, step, ok)
		}
	}
}

func TestCheckTOTPSkew(t *testing.T) {
	now := time.Unix(1111111111, 0) // inside step 37037037
	cur := totpCounter(now)
	code := func(step int64) string { return hotp(rfcKey, uint64(step), 6) }
	tests := []struct {
		name string
		code string
		ok   bool
		step int64
	}{
		{"current step", code(cur), true, cur},
		{"one step back", code(cur - 1), true, cur - 1},
		{"one step ahead", code(cur + 1), true, cur + 1},
		{"two steps back", code(cur - 2), false, 0},
		{"two steps ahead", code(cur + 2), false, 0},
		{"surrounding spaces", " " + code(cur) + " ", true, cur},
		{"too short", code(cur)[:5], false, 0},
		{"eight digits", hotp(rfcKey, uint64(cur), 8), false, 0},
		{"empty", "", false, 0},
		{"letters", "abcdef", false, 0},
	}
	for _, tt := range tests {
		step, ok := checkTOTP(rfcKey, tt.code, now)
		if ok != tt.ok || step != tt.step {
			t.Errorf("%s: got %d, %v; want %d, %v", tt.name, step, ok, tt.step, tt.ok)
		}
	}
	// Step boundaries: the last second of a step and the first of the next.
	stepStart := time.Unix(cur*30, 0)
	if _, ok := checkTOTP(rfcKey, code(cur-2), stepStart); ok {
		t.Error("a code two steps old is accepted at a step boundary")
	}
	if _, ok := checkTOTP(rfcKey, code(cur-2), stepStart.Add(-time.Second)); !ok {
		t.Error("a code one step old is refused in the last second of the step")
	}
}

func TestParseTOTPSecret(t *testing.T) {
	enc := base32.StdEncoding.EncodeToString(rfcKey) // GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"canonical", enc, true},
		{"lower case with spaces", "gezd gnbv gy3t qojq gezd gnbv gy3t qojq", true},
		{"padded", base32.StdEncoding.EncodeToString(rfcKey[:11]), true},
		{"not base32", "GEZDGNBV1!", false},
		{"too short", base32.StdEncoding.EncodeToString(rfcKey[:9]), false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		key, err := ParseTOTPSecret(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if tt.ok && tt.name != "padded" && string(key) != string(rfcKey) {
			t.Errorf("%s: key = %q", tt.name, key)
		}
	}
}

func TestStepGuards(t *testing.T) {
	st := openStore(t)
	guards := map[string]func() (StepGuard, StepGuard){
		"memory": func() (StepGuard, StepGuard) { g := &MemoryStepGuard{}; return g, g },
		// Two guards over one store stand for two broker replicas.
		"store": func() (StepGuard, StepGuard) { return StoreStepGuard{Store: st}, StoreStepGuard{Store: st} },
	}
	for name, mk := range guards {
		t.Run(name, func(t *testing.T) {
			a, b := mk()
			ctx := context.Background()
			steps := []struct {
				g     StepGuard
				user  string
				step  int64
				reuse bool
			}{
				{a, "alice", 100, false},
				{a, "alice", 100, true}, // same code again
				{b, "alice", 100, true}, // same code on another replica
				{a, "alice", 99, true},  // older code after a newer one
				{b, "alice", 101, false},
				{a, "bob", 100, false}, // users are independent
				{a, "alice", 102, false},
			}
			for i, s := range steps {
				err := s.g.Claim(ctx, s.user, s.step)
				if s.reuse != errors.Is(err, ErrCodeReused) || (!s.reuse && err != nil) {
					t.Fatalf("step %d (%s %d): err = %v, want reuse %v", i, s.user, s.step, err, s.reuse)
				}
			}
		})
	}
}
