// Package protocols_test enforces the import direction of the protocol
// proxies: they declare the small interfaces they need and never reach for
// the approval channels or the Vault client, directly or through another
// package.
package protocols_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/custos-pam/custos"

// forbiddenPrefixes are import paths no package under protocols/ may depend
// on.
var forbiddenPrefixes = []string{
	module + "/approvals",
	"github.com/hashicorp/vault",
}

// forbidden returns the dependencies that break the rule.
func forbidden(deps []string) []string {
	var bad []string
	for _, d := range deps {
		for _, p := range forbiddenPrefixes {
			if d == p || strings.HasPrefix(d, p+"/") {
				bad = append(bad, d)
			}
		}
	}
	return bad
}

func TestForbiddenMatcher(t *testing.T) {
	tests := []struct {
		deps []string
		bad  []string
	}{
		{[]string{"fmt", module + "/broker", module + "/recorder/event"}, nil},
		{[]string{module + "/approvals/slack"}, []string{module + "/approvals/slack"}},
		{[]string{"github.com/hashicorp/vault/api"}, []string{"github.com/hashicorp/vault/api"}},
		{[]string{module + "/approvalsx", "github.com/hashicorp/vaultish"}, nil},
	}
	for _, tc := range tests {
		if got := forbidden(tc.deps); !slices.Equal(got, tc.bad) {
			t.Errorf("%v: %v, want %v", tc.deps, got, tc.bad)
		}
	}
}

// TestProtocolsImportDirection lists every package under protocols/ with
// its transitive (non-test) dependencies and fails on a forbidden one.
func TestProtocolsImportDirection(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "list", "-deps=false", "-json=ImportPath,Deps", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var seen []string
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, p.ImportPath)
		if bad := forbidden(p.Deps); len(bad) > 0 {
			t.Errorf("%s depends on %v: protocols declare interfaces and are wired in cmd/custos/app", p.ImportPath, bad)
		}
	}
	if !slices.Contains(seen, module+"/protocols/ssh") {
		t.Fatalf("go list did not see protocols/ssh: %v", seen)
	}
}
