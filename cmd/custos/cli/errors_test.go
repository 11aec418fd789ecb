package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	for _, c := range []struct {
		err  error
		exit int
		code string
	}{
		{&apiError{Status: 404, Code: "unknown_target", Message: "x"}, exitNotFound, "unknown_target"},
		{fmt.Errorf("approve: %w", &apiError{Status: 403, Code: "self_approval"}), exitRefused, "self_approval"},
		{&apiError{Status: 409, Code: "already_decided"}, exitRefused, "already_decided"},
		{&apiError{Status: 401, Code: "token_invalid"}, exitRefused, "token_invalid"},
		{&apiError{Status: 422, Code: "duration_exceeds_max"}, exitUsage, "duration_exceeds_max"},
		{&apiError{Status: 400, Code: "bad_duration"}, exitUsage, "bad_duration"},
		{&apiError{Status: 429, Code: "too_many_attempts"}, exitUnavailable, "too_many_attempts"},
		{&apiError{Status: 503, Code: "no_recorder"}, exitUnavailable, "no_recorder"},
		{&apiError{Status: 502}, exitUnavailable, "http_502"},
		{&apiError{Status: 500, Code: "internal"}, exitFailure, "internal"},
		{fmt.Errorf("whoami: %w", &unreachableError{errors.New("connection refused")}), exitUnavailable, "unavailable"},
		{&unauthenticatedError{"not logged in: run custos login"}, exitRefused, "unauthenticated"},
		{usageErr(errors.New("--output must be text or json")), exitUsage, "usage"},
		{&exitError{code: exitTampered, msg: "verify: tampered"}, exitTampered, "tampered"},
		{errors.New(`unknown command "x" for "custos"`), exitUsage, "usage"},
		{errors.New("unknown flag: --nope"), exitUsage, "usage"},
		{errors.New(`accepts 1 arg(s), received 0`), exitUsage, "usage"},
		{errors.New("read profile: permission denied"), exitFailure, "error"},
	} {
		exit, code := exitCodeOf(c.err)
		if exit != c.exit || code != c.code {
			t.Errorf("%v: exit %d code %s, want %d %s", c.err, exit, code, c.exit, c.code)
		}
	}
}

func TestOutputArg(t *testing.T) {
	for args, want := range map[string]string{
		"targets -o json --nope": "json", "targets --output=json": "json", "targets -ojson": "json",
		"targets --output json": "json", "targets": "text", "ssh x -- -o json": "text",
	} {
		if got := outputArg(strings.Fields(args)); got != want {
			t.Errorf("%q: %q, want %q", args, got, want)
		}
	}
}

func TestReportErrorJSON(t *testing.T) {
	var b bytes.Buffer
	if code := reportError(&b, "json", &apiError{Status: 404, Code: "not_found", Message: "no request req_x"}); code != exitNotFound {
		t.Fatalf("exit %d", code)
	}
	if got := b.String(); got != `{"error":{"code":"not_found","exit":4,"message":"no request req_x (not_found)"}}`+"\n" {
		t.Fatalf("json error: %s", got)
	}
}

// TestWriteSSHBlock: the marked block is replaced in place, the rest of
// the file kept; a block without its end marker is not guessed at.
func TestWriteSSHBlock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config")
	block := func(s string) string { return sshBlockBegin + "\n" + s + "\n" + sshBlockEnd + "\n" }
	mine := "Host a\n  User me\n"
	if err := os.WriteFile(file, []byte(mine), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := writeSSHBlock(file, block("Host one")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, append(must(os.ReadFile(file)), "Host z\n"...), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := writeSSHBlock(file, block("Host two")); err != nil {
		t.Fatal(err)
	}
	want := mine + "\n" + block("Host two") + "Host z\n"
	if got := string(must(os.ReadFile(file))); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := os.WriteFile(file, []byte(sshBlockBegin+"\nHost x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeSSHBlock(file, block("Host three")); err == nil {
		t.Fatal("a block without its end marker was rewritten")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
