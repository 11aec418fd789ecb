package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/audit"
)

// StaticCreds is the current password of a database static role, the
// account a break-glass unseal hands out.
type StaticCreds struct {
	Username string
	Password string
	// LastRotation is when Vault last set the password.
	LastRotation time.Time
	// TTL is the time left until Vault's next scheduled rotation.
	TTL time.Duration
}

// StaticCreds reads database/static-creds/<name>. actor is who asked
// (the break-glass unseal); the read is audited without the password.
func (i *Issuer) StaticCreds(ctx context.Context, actor, name string) (StaticCreds, error) {
	path := i.c.cfg.DatabaseMount + "/static-creds/" + name
	s, err := i.c.read(ctx, path)
	var out StaticCreds
	if err == nil {
		if s == nil || s.Data == nil {
			err = fmt.Errorf("vault: read %s: no such static role", path)
		} else {
			out.Username, _ = s.Data["username"].(string)
			out.Password, _ = s.Data["password"].(string)
			if ts, _ := s.Data["last_vault_rotation"].(string); ts != "" {
				out.LastRotation, _ = time.Parse(time.RFC3339Nano, ts)
			}
			if n, ok := s.Data["ttl"].(json.Number); ok {
				secs, _ := n.Int64()
				out.TTL = time.Duration(secs) * time.Second
			}
			if out.Username == "" || out.Password == "" {
				err = fmt.Errorf("vault: read %s: incomplete credentials in response", path)
			}
		}
	}
	i.auditBreakGlass(ctx, actor, "creds.static.read", name, err, map[string]any{"role": name, "username": out.Username})
	if err != nil {
		return StaticCreds{}, fmt.Errorf("creds: static role %s: %w", name, err)
	}
	return out, nil
}

// RotateStatic has Vault set a new password for the static role now
// (database/rotate-role/<name>), e.g. when a break-glass account is
// resealed.
func (i *Issuer) RotateStatic(ctx context.Context, actor, name string) error {
	_, err := i.c.write(ctx, i.c.cfg.DatabaseMount+"/rotate-role/"+name, nil)
	i.auditBreakGlass(ctx, actor, "creds.static.rotate", name, err, map[string]any{"role": name})
	if err != nil {
		return fmt.Errorf("creds: rotate static role %s: %w", name, err)
	}
	return nil
}

// ReadSecret reads the latest version of the KV v2 secret at path under
// the KV mount. It returns the string fields and the version.
func (i *Issuer) ReadSecret(ctx context.Context, actor, path string) (map[string]string, int, error) {
	full := i.c.cfg.KVMount + "/data/" + strings.TrimPrefix(path, "/")
	s, err := i.c.read(ctx, full)
	var data map[string]string
	var version int
	if err == nil {
		var d map[string]any
		if s != nil {
			d = s.Data
		}
		data, version, err = parseKV(full, d)
	}
	i.auditBreakGlass(ctx, actor, "creds.kv.read", path, err, map[string]any{"path": path, "version": version})
	if err != nil {
		return nil, 0, fmt.Errorf("creds: read secret %s: %w", path, err)
	}
	return data, version, nil
}

// WriteSecret stores data as a new version of the KV v2 secret at path and
// returns the version number.
func (i *Issuer) WriteSecret(ctx context.Context, actor, path string, data map[string]string) (int, error) {
	full := i.c.cfg.KVMount + "/data/" + strings.TrimPrefix(path, "/")
	s, err := i.c.write(ctx, full, map[string]any{"data": data})
	var version int
	if err == nil {
		if s == nil || s.Data == nil {
			err = fmt.Errorf("vault: write %s: no version in response", full)
		} else {
			version = jsonInt(s.Data["version"])
		}
	}
	i.auditBreakGlass(ctx, actor, "creds.kv.write", path, err, map[string]any{"path": path, "version": version})
	if err != nil {
		return 0, fmt.Errorf("creds: write secret %s: %w", path, err)
	}
	return version, nil
}

func parseKV(path string, d map[string]any) (map[string]string, int, error) {
	if d == nil {
		return nil, 0, fmt.Errorf("vault: read %s: %w", path, broker.ErrNotFound)
	}
	raw, _ := d["data"].(map[string]any)
	meta, _ := d["metadata"].(map[string]any)
	if raw == nil {
		// A deleted or destroyed latest version has metadata but no data.
		return nil, 0, fmt.Errorf("vault: read %s: latest version deleted: %w", path, broker.ErrNotFound)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		s, ok := v.(string)
		if !ok {
			return nil, 0, fmt.Errorf("vault: read %s: field %q is not a string", path, k)
		}
		out[k] = s
	}
	return out, jsonInt(meta["version"]), nil
}

func jsonInt(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	}
	return 0
}

func (i *Issuer) auditBreakGlass(ctx context.Context, actor, action, target string, cause error, details map[string]any) {
	if actor == "" {
		actor = "system"
	}
	e := audit.Entry{Actor: actor, Action: action, Target: target, Outcome: broker.OutcomeSuccess, Details: details}
	if cause != nil {
		e.Outcome, e.Reason = broker.OutcomeError, cause.Error()
		if errors.Is(cause, broker.ErrNotFound) {
			e.Outcome = broker.OutcomeDenied
		}
	}
	if _, err := i.audit.Append(context.WithoutCancel(ctx), e); err != nil {
		i.log.Error("audit "+action, "err", err)
	}
}
