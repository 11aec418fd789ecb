package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// profile is what the CLI remembers about the broker between runs, in
// profile.json next to the token: written by every successful login and
// kept by logout, so later commands need neither --url nor $CUSTOS_URL.
type profile struct {
	URL string `json:"url"`
	// CACert is the CA file the broker's certificate chains to, when
	// login was given one (--ca-cert or $CUSTOS_CA_CERT).
	CACert string `json:"ca_cert,omitempty"`
}

// configDir is the CLI's directory for its token, profile and SSH key:
// $CUSTOS_CONFIG_DIR, or custos under the user's config directory.
func configDir() (string, error) {
	if dir := os.Getenv("CUSTOS_CONFIG_DIR"); dir != "" {
		return dir, nil
	}
	base, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config dir: %w", err)
	}
	return filepath.Join(base, "custos"), nil
}

func profilePath() (string, error) {
	dir, err := configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "profile.json"), nil
}

// loadProfile returns the saved profile; none saved is an empty one.
func loadProfile() (profile, error) {
	var p profile
	path, err := profilePath()
	if err != nil {
		return p, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("read profile: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("read profile %s: %w", path, err)
	}
	return p, nil
}

func saveProfile(p profile) error {
	path, err := profilePath()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, p, 0o600)
}

// writeFileAtomic writes v as indented JSON to path through a temporary
// file, creating the directory (mode 0700) when needed.
func writeFileAtomic(path string, v any, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save %s: %w", filepath.Base(path), err)
	}
	return nil
}

// resolveBroker settles the broker URL and CA file: a flag wins over the
// environment, which wins over the saved profile.
func (g *globals) resolveBroker() error {
	if g.resolved {
		return nil
	}
	p, err := loadProfile()
	if err != nil {
		return err
	}
	pick := func(flag, env, saved string) string {
		switch {
		case flag != "":
			return flag
		case env != "":
			return env
		}
		return saved
	}
	g.url = strings.TrimRight(pick(g.url, os.Getenv("CUSTOS_URL"), p.URL), "/")
	g.caCert = pick(g.caCert, os.Getenv("CUSTOS_CA_CERT"), "")
	if g.caCert == "" && g.url == p.URL {
		// The saved CA belongs to the saved URL only.
		g.caCert = p.CACert
	}
	g.resolved = true
	return nil
}
