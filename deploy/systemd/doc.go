// Package systemd holds the broker's systemd service unit
// (custos.service), its sysusers.d entry (custos.sysusers) and the
// environment file template for its secrets (custos.env.example). It has
// no code: its tests check the unit with systemd-analyze verify and
// systemd-analyze security, create the user with systemd-sysusers in a
// scratch root, and check that deploy/custos.production.yaml fits the
// unit (writable paths, unprivileged ports, every env: secret named in
// the environment file). Installing them: docs/operations.md.
package systemd
