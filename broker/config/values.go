package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Secret is a value that may be given inline or, preferably, by reference:
// "env:NAME" reads an environment variable and "file:/path" reads a file
// (trailing newline trimmed). The zero value is "not set".
type Secret string

// IsSet reports whether a value or reference was given.
func (s Secret) IsSet() bool { return s != "" }

// Resolve returns the secret's value. The error names the reference, never
// the value.
func (s Secret) Resolve() (string, error) {
	v := string(s)
	switch {
	case strings.HasPrefix(v, "env:"):
		name := strings.TrimPrefix(v, "env:")
		val, ok := os.LookupEnv(name)
		if !ok || val == "" {
			return "", fmt.Errorf("secret env:%s: environment variable is not set", name)
		}
		return val, nil
	case strings.HasPrefix(v, "file:"):
		path := strings.TrimPrefix(v, "file:")
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("secret file:%s: %w", path, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	default:
		return v, nil
	}
}

// String hides the value: only references are printed.
func (s Secret) String() string {
	v := string(s)
	if v == "" || strings.HasPrefix(v, "env:") || strings.HasPrefix(v, "file:") {
		return v
	}
	return "[inline secret]"
}

// Duration is a time.Duration written as a Go duration string ("90s",
// "1h30m") or with a day or year suffix ("30d", "6y"; a year is 365.25
// days). In YAML it may also be a bare number of seconds.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ParseDuration parses the formats Duration accepts.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"d", 24 * time.Hour}, {"y", time.Duration(365.25 * 24 * float64(time.Hour))}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ResolveLines expands a list of public-key entries: an entry "file:/path"
// is replaced by the non-empty, non-comment lines of that file; other
// entries are kept as they are. Used for ssh_keys and host_keys.
func ResolveLines(entries []string) ([]string, error) {
	var out []string
	for _, e := range entries {
		path, ok := strings.CutPrefix(e, "file:")
		if !ok {
			out = append(out, e)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line != "" && !strings.HasPrefix(line, "#") {
				out = append(out, line)
			}
		}
	}
	return out, nil
}
