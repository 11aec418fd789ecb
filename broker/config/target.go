package config

// Target is a database or host Custos brokers access to.
type Target struct {
	// Name is how users refer to the target (custos request NAME).
	Name string `yaml:"name"`
	// Kind is "ssh" or "postgres".
	Kind string `yaml:"kind"`
	// Address is host:port of the target.
	Address string `yaml:"address"`
	// Description is shown in listings. Default: empty.
	Description string `yaml:"description"`
	// Roles are the access levels that can be requested.
	Roles []Role `yaml:"roles"`
	// SSH holds settings for kind "ssh".
	SSH TargetSSH `yaml:"ssh"`
	// Postgres holds settings for kind "postgres".
	Postgres TargetPostgres `yaml:"postgres"`
	// Recording overrides recording policy for this target.
	Recording TargetRecording `yaml:"recording"`
	// ApproveInSlack allows approving this target's requests with a Slack
	// button. Default (nil): true; false sends approvers to the web UI.
	ApproveInSlack *bool `yaml:"approve_in_slack"`
	// SlackChannel overrides slack.channel for this target. Default: empty.
	SlackChannel string `yaml:"slack_channel"`
}

// TargetSSH holds SSH-target settings.
type TargetSSH struct {
	// HostKeys pins the target's host public keys (authorized_keys format).
	// Either HostKeys or HostCA is required.
	HostKeys []string `yaml:"host_keys"`
	// HostCA is a host certificate authority public key; host certificates
	// it signed are accepted. Default: none.
	HostCA string `yaml:"host_ca"`
}

// TargetPostgres holds PostgreSQL-target settings.
type TargetPostgres struct {
	// Database is the default database. Default: "postgres".
	Database string `yaml:"database"`
	// Databases lists other databases a client may name as TARGET/db.
	// Default: only Database.
	Databases []string `yaml:"databases"`
	// TLS is how the broker secures its connection to the target, with
	// libpq's meanings: "verify-full" (TLS, the certificate chains to
	// CACert and names the host; the production setting), "verify-ca"
	// (TLS, the certificate chains to CACert, any name), "require" (TLS,
	// no certificate check), "prefer" (TLS when the target offers it, no
	// check) or "disable". Default: "prefer".
	TLS string `yaml:"tls"`
	// CACert is a PEM file of the certificate authorities that may sign the
	// target's certificate, for verify-full and verify-ca. Default: the
	// system's roots.
	CACert string `yaml:"ca_cert"`
	// TLSServerName is the name the target's certificate must carry under
	// verify-full (and the SNI name sent), when Address is an IP address
	// or another name. Default: the host of Address.
	TLSServerName string `yaml:"tls_server_name"`
	// Parameters is the bind-parameter redaction policy: "record", "hash"
	// or "omit". Default: "record".
	Parameters string `yaml:"parameters"`
	// RecordResults records result rows, capped per statement by
	// ResultRowsCap and ResultBytesCap. Default: false (rows are PHI).
	RecordResults  bool `yaml:"record_results"`
	ResultRowsCap  int  `yaml:"result_rows_cap"`
	ResultBytesCap int  `yaml:"result_bytes_cap"`
	// MaxStatementBytes bounds, in bytes, each text the proxy records of
	// a client message: the SQL of a Query or Parse, a statement or portal
	// name, and each parameter value of a Bind or FunctionCall as recorded
	// under the "record" policy. A message with a longer one is refused
	// (SQLSTATE 54000) and the session ends, so nothing reaches the
	// target that the recording does not hold whole. Default and maximum:
	// MaxStatementBytes (1 MiB).
	MaxStatementBytes int `yaml:"max_statement_bytes"`
}

// MaxStatementBytes is the most a recording holds of one text (the
// recorder's event.MaxFieldLen; a PostgreSQL proxy test checks the two
// agree): targets[].postgres.max_statement_bytes's default and upper
// bound.
const MaxStatementBytes = 1 << 20

// TargetRecording overrides recording policy for one target.
type TargetRecording struct {
	// Retention overrides recording.retention. Default: 0 (use global).
	Retention Duration `yaml:"retention"`
	// FailOpen lets sessions continue when the recorder fails. Default:
	// false (fail closed). Every use is audited.
	FailOpen bool `yaml:"fail_open"`
	// IndexSQL is what the unencrypted session index keeps of SQL text:
	// "normalized" (literals replaced by $N placeholders, comments
	// dropped), "full" (as sent, literals included) or "none". Default:
	// "" (normalized).
	IndexSQL string `yaml:"index_sql"`
	// FileContents is how the contents of files moved by scp and SFTP on
	// an SSH target are recorded: "full" (every byte of the channel, with
	// file events on top) or "digest" (the contents of each correctly
	// framed file are replaced by its size and SHA-256; everything else is
	// still recorded). rsync channels are always recorded in full.
	// Default: "" (full).
	FileContents string `yaml:"file_contents"`
}

// File-contents recording policies (TargetRecording.FileContents).
const (
	FileContentsFull   = "full"
	FileContentsDigest = "digest"
)

// Role is an access level on a target, with the policy that governs it.
type Role struct {
	// Name is the role as requested (custos request T --role NAME).
	Name string `yaml:"name"`
	// Login is the SSH login name on the target. Default: the role name.
	Login string `yaml:"login"`
	// VaultRole is the Vault role credentials come from
	// (database/creds/<role> or ssh/sign/<role>). Default: the role name.
	VaultRole string `yaml:"vault_role"`
	// PerSession issues PostgreSQL credentials per session instead of per
	// grant. Default: false.
	PerSession bool `yaml:"per_session"`
	// Shell lets SSH sessions open a PTY. Default (nil): true.
	Shell *bool `yaml:"shell"`
	// AllowPortForward allows local port forwarding (recorded). Default: false.
	AllowPortForward bool `yaml:"allow_port_forward"`
	// Env lists environment variables a client may set. Default: TERM and LANG/LC_*.
	Env []string `yaml:"env"`
	// IdleTimeout ends a session with no traffic for this long. Default: 0 (none).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// Policy decides who may request and approve, and how.
	Policy Policy `yaml:"policy"`
	// Masking maps data_dictionary classifications to what the
	// PostgreSQL proxy does with their values for this role: pass, mask,
	// hash or null. The key "unknown" covers fields that cannot be
	// classified and classifications not named here; it defaults to mask.
	// Default: empty (results are relayed unchanged).
	Masking map[string]string `yaml:"masking"`
	// Unmask makes this role the time-boxed unmasked variant of a masked
	// role: it has that role's masking rules with the listed
	// classifications passed, and is requested and approved on its own.
	// Default: nil.
	Unmask *Unmask `yaml:"unmask"`
	// ResultSample records, per statement, up to this many result rows
	// as the role received them (after masking) as pg_row events. Only
	// for roles with masking rules. Default: 0 (no rows recorded, unless
	// the target's record_results says so).
	ResultSample int `yaml:"result_sample"`
	// Guardrails are statement guardrails for PostgreSQL sessions of the
	// role (guardrails.go). Default: nil (statements are not parsed).
	Guardrails *Guardrails `yaml:"guardrails"`
}

// Unmask names the masked role a role unmasks and what it unmasks.
type Unmask struct {
	// Role is the masked role of the same target. Required.
	Role string `yaml:"role"`
	// Classifications are passed in clear. Required.
	Classifications []string `yaml:"classifications"`
}

// Policy governs requests for one role.
type Policy struct {
	// Requesters lists users and groups who may request. Default: anyone
	// with an identity.
	Requesters []string `yaml:"requesters"`
	// Approvers lists groups (or users) whose members may approve.
	// Required unless Approvals is 0... which is not allowed: peer
	// approval is the point.
	Approvers []string `yaml:"approvers"`
	// Approvals is how many distinct approvers must approve. Default: 1.
	Approvals int `yaml:"approvals"`
	// DenyEnds makes any deny end the request. Default (nil): true.
	DenyEnds *bool `yaml:"deny_ends"`
	// MaxDuration caps the requested duration. Default: 8h.
	MaxDuration Duration `yaml:"max_duration"`
	// RequireReason requires a reason. Default: false.
	RequireReason bool `yaml:"require_reason"`
	// RequireTicket requires a ticket ID. Default: false.
	RequireTicket bool `yaml:"require_ticket"`
	// TicketPattern is a regular expression a ticket must match in full.
	// Default: any.
	TicketPattern string `yaml:"ticket_pattern"`
	// Window limits when requests may be made and grants run. Default: always.
	Window *Window `yaml:"window"`
	// RequestTTL is how long a request waits for decisions. Default: 30m.
	RequestTTL Duration `yaml:"request_ttl"`
	// Hold lets a user wait at the SSH banner while a request is made and
	// decided. Default: false.
	Hold bool `yaml:"hold"`
	// HoldTimeout bounds that wait. Default: 5m.
	HoldTimeout Duration `yaml:"hold_timeout"`
	// RemindBefore sends approvers a reminder this long before a pending
	// request expires. Default: 0 (no reminder).
	RemindBefore Duration `yaml:"remind_before"`
	// DMApprovers sends eligible approvers a Slack DM too. Default: false.
	DMApprovers bool `yaml:"dm_approvers"`
	// Signature "required" makes every approval and denial of the role an
	// electronic signature: the approver re-authenticates and chooses a
	// meaning (signatures.meanings). Slack then hands off to the web UI.
	// Default: empty, no signature.
	Signature string `yaml:"signature"`
	// StepUp makes every approval of this role need a fresh
	// re-authentication bound to the request: passkey (a WebAuthn
	// assertion with user verification), totp (a TOTP code or a passkey)
	// or any (the same as totp). Slack buttons cannot collect one, so
	// such roles are approved in the web UI or the CLI. Default: empty,
	// no step-up.
	StepUp string `yaml:"step_up"`
}

// Window is a recurring time window in a time zone.
type Window struct {
	// TZ is an IANA time zone. Default: UTC.
	TZ string `yaml:"tz"`
	// Days lists weekdays (mon..sun). Default: every day.
	Days []string `yaml:"days"`
	// Start and End are HH:MM. End before Start spans midnight. Default:
	// 00:00–24:00.
	Start string `yaml:"start"`
	End   string `yaml:"end"`
}

// DenyEndsOrDefault reports whether a deny ends the request.
func (p Policy) DenyEndsOrDefault() bool { return p.DenyEnds == nil || *p.DenyEnds }

// ShellAllowed reports whether the role may open a PTY.
func (r Role) ShellAllowed() bool { return r.Shell == nil || *r.Shell }

// LoginOrDefault is the SSH login for the role.
func (r Role) LoginOrDefault() string {
	if r.Login != "" {
		return r.Login
	}
	return r.Name
}

// VaultRoleOrDefault is the Vault role for the role.
func (r Role) VaultRoleOrDefault() string {
	if r.VaultRole != "" {
		return r.VaultRole
	}
	return r.Name
}

// FindTarget returns the named target.
func (c *Config) FindTarget(name string) (*Target, bool) {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i], true
		}
	}
	return nil, false
}

// FindRole returns the named role of the target.
func (t *Target) FindRole(name string) (*Role, bool) {
	for i := range t.Roles {
		if t.Roles[i].Name == name {
			return &t.Roles[i], true
		}
	}
	return nil, false
}
