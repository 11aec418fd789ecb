package app

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	slackapprovals "github.com/custos-pam/custos/approvals/slack"
	"github.com/custos-pam/custos/broker"
	"github.com/custos-pam/custos/broker/access"
	"github.com/custos-pam/custos/broker/audit"
	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/broker/identity"
	"github.com/custos-pam/custos/broker/kri"
	sshproxy "github.com/custos-pam/custos/protocols/ssh"
)

// reloader applies a config read again on SIGHUP to the running broker.
// What reloads: users, groups, security_admins, targets with their roles
// and policies, notify, indicators (limits, windows, owner; not the
// interval), and Slack's channel, security_channel,
// match_email and ticket_url. Everything else (listen addresses and TLS,
// public_url, store, recording, audit, vault, auth, Slack tokens and
// signing secret, break-glass accounts) is read once at start: a change
// there is logged as a warning and applies at the next restart.
type reloader struct {
	live    *config.Live
	dir     *identity.Directory
	ids     *identity.Service
	acc     *access.Service
	audit   *audit.Log
	slack   *slackapprovals.Slack
	sshKeys *sshproxy.KeyIdentities
	log     *slog.Logger
}

// fromFile reads the config at path and applies it. A config that does
// not load or validate is refused with an error log line, and the running
// config stays as it was; so does one whose users cannot be loaded (a key
// file missing).
func (rl *reloader) fromFile(ctx context.Context, path string) {
	if rl == nil {
		return
	}
	log := rl.log.With("config", path)
	if path == "" {
		log.Warn("config reload asked for, but the broker was started without a config file; nothing reloaded")
		return
	}
	if err := rl.apply(ctx, path, log); err != nil {
		log.Error("config reload refused; the running config stays", "err", err)
		rl.audited(ctx, broker.OutcomeError, err.Error(), nil)
	}
}

func (rl *reloader) apply(ctx context.Context, path string, log *slog.Logger) error {
	next, err := config.Load(path)
	if err != nil {
		return err
	}
	cur := rl.live.Load()
	merged, notApplied := config.Merge(cur, next)
	if err := merged.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if err := kri.CheckLimits(merged.Indicators.Limits); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	// Build everything that can fail before changing anything.
	if err := rl.checkUsers(merged); err != nil {
		return err
	}
	if err := rl.dir.Reload(merged); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if rl.sshKeys != nil {
		if err := rl.sshKeys.Reload(merged.Users); err != nil {
			// The directory already took the new users; put it back.
			_ = rl.dir.Reload(cur)
			return fmt.Errorf("config %s: %w", path, err)
		}
	}
	rl.live.Store(merged)
	if rl.slack != nil {
		rl.slack.Reload(merged.Slack, merged.Targets)
	}
	for _, part := range notApplied {
		log.Warn("config reload: this part changed but is only read at start; it applies at the next restart", "part", part)
	}
	// Users removed or disabled lose their tokens, grants (and so their
	// live sessions) and pending requests now.
	if err := deprovision(ctx, rl.ids, rl.acc, log); err != nil {
		log.Error("config reload: ending the access of removed users failed; it is retried at the next reload or restart", "err", err)
	}
	log.Info("config reloaded", "targets", len(merged.Targets), "users", len(merged.Users), "not_applied", strings.Join(notApplied, "; "))
	rl.audited(ctx, broker.OutcomeSuccess, "", notApplied)
	return nil
}

// checkUsers builds the users of c without installing them, so a broken
// user entry refuses the reload before anything changed.
func (rl *reloader) checkUsers(c *config.Config) error {
	if _, err := identity.NewDirectory(c); err != nil {
		return fmt.Errorf("users: %w", err)
	}
	if rl.sshKeys != nil {
		if _, err := sshproxy.NewKeyIdentities(c.Users); err != nil {
			return fmt.Errorf("users: %w", err)
		}
	}
	return nil
}

// audited records the reload (a config change is evidence).
func (rl *reloader) audited(ctx context.Context, outcome, reason string, notApplied []string) {
	d := map[string]any{}
	if len(notApplied) > 0 {
		d["not_applied"] = notApplied
	}
	if _, err := rl.audit.Append(context.WithoutCancel(ctx), audit.Entry{Actor: "system", Action: "config.reload",
		Outcome: outcome, Reason: reason, Details: d}); err != nil {
		rl.log.Error("audit config.reload failed", "err", err)
	}
}
