package config

import "time"

// User is an identity that may sign in.
type User struct {
	// Name is the login name.
	Name string `yaml:"name"`
	// DisplayName is the user's full name, printed on their electronic
	// signatures. Default: empty, the login name is printed.
	DisplayName string `yaml:"display_name"`
	// Email is used for display and Slack email mapping. Default: empty.
	Email string `yaml:"email"`
	// SlackID maps the user's Slack user ID (e.g. U0ALICE). Default: empty.
	SlackID string `yaml:"slack_id"`
	// SSHKeys are public keys (authorized_keys format) that authenticate
	// the user to the SSH proxy. Default: none.
	SSHKeys []string `yaml:"ssh_keys"`
	// PasswordHash is an argon2id PHC string ($argon2id$v=19$...). Either
	// PasswordHash or Password is required to sign in with a password.
	PasswordHash Secret `yaml:"password_hash"`
	// Password is a plaintext password reference (env:NAME or file:/path),
	// meant for development stacks; it is hashed at load. Default: none.
	Password Secret `yaml:"password"`
	// TOTPSecret is a base32 TOTP secret reference; when set, sign-in needs
	// a current code. Default: none.
	TOTPSecret Secret `yaml:"totp_secret"`
	// Disabled refuses sign-in. Default: false.
	Disabled bool `yaml:"disabled"`
}

// MaxSSHCertTTL caps auth.ssh_cert_ttl.
const MaxSSHCertTTL = time.Hour

// Auth configures authentication.
type Auth struct {
	// TokenTTL is the lifetime of API tokens from custos login. Default: 8h.
	TokenTTL Duration `yaml:"token_ttl"`
	// WebSessionTTL is the lifetime of web sign-in sessions. Default: 8h.
	WebSessionTTL Duration `yaml:"web_session_ttl"`
	// DBTokenTTL is the lifetime of database connection tokens. Default: 15m
	// (never beyond the grant).
	DBTokenTTL Duration `yaml:"db_token_ttl"`
	// SSHCertTTL is the lifetime of SSH user certificates from
	// custos login --ssh. A certificate cannot be revoked, so it stays
	// valid for connecting after its API token is revoked (each connection
	// still needs an active grant and an enabled user): keep it short.
	// At most MaxSSHCertTTL. Default: 5m.
	SSHCertTTL Duration `yaml:"ssh_cert_ttl"`
	// MaxFailures is how many failed sign-ins per user or source address
	// are allowed within FailureWindow before further attempts are refused.
	// Default: 5.
	MaxFailures int `yaml:"max_failures"`
	// FailureWindow is the rate-limit window. Default: 15m.
	FailureWindow Duration `yaml:"failure_window"`
}

// Vault configures the credential issuer.
type Vault struct {
	// Address is Vault's URL. Default: empty (Vault off).
	Address string `yaml:"address"`
	// Token authenticates in development. Default: none.
	Token Secret `yaml:"token"`
	// RoleID and SecretID authenticate with AppRole. Default: none.
	RoleID   Secret `yaml:"role_id"`
	SecretID Secret `yaml:"secret_id"`
	// AppRoleMount is the AppRole auth mount. Default: "approle".
	AppRoleMount string `yaml:"approle_mount"`
	// DatabaseMount, SSHMount, TransitMount and KVMount name the engines.
	// Defaults: "database", "ssh", "transit", "secret".
	DatabaseMount string `yaml:"database_mount"`
	SSHMount      string `yaml:"ssh_mount"`
	TransitMount  string `yaml:"transit_mount"`
	KVMount       string `yaml:"kv_mount"`
	// CACert is a PEM file to verify Vault's TLS certificate. Default:
	// system roots.
	CACert string `yaml:"ca_cert"`
	// Timeout bounds each Vault call. Default: 5s.
	Timeout Duration `yaml:"timeout"`
}

// Slack configures Slack approvals.
type Slack struct {
	// Enabled turns Slack on. Default: false.
	Enabled bool `yaml:"enabled"`
	// BotToken is the bot token (xoxb-…) reference.
	BotToken Secret `yaml:"bot_token"`
	// SigningSecret verifies interaction payloads on the HTTP endpoint.
	SigningSecret Secret `yaml:"signing_secret"`
	// AppToken (xapp-…) enables Socket Mode. Default: none.
	AppToken Secret `yaml:"app_token"`
	// Channel is the default approval channel ID.
	Channel string `yaml:"channel"`
	// SecurityChannel receives break-glass and drill notices. Default: Channel.
	SecurityChannel string `yaml:"security_channel"`
	// APIURL overrides Slack's Web API base URL. Default: Slack's.
	APIURL string `yaml:"api_url"`
	// MatchEmail maps Slack users to identities by users.info email when no
	// slack_id is configured. Default: false.
	MatchEmail bool `yaml:"match_email"`
	// TicketURL is a template for ticket links, with {ticket}. Default: none.
	TicketURL string `yaml:"ticket_url"`
}

// Recording configures session recording.
type Recording struct {
	// Store is "local" or "s3". Default: "local".
	Store string `yaml:"store"`
	// Dir is the local store directory. Default: <data_dir>/recordings.
	Dir string `yaml:"dir"`
	// SpoolDir holds chunks before upload. Default: <data_dir>/spool.
	SpoolDir string `yaml:"spool_dir"`
	// S3 configures the S3-compatible store.
	S3 S3 `yaml:"s3"`
	// Retention is the Object Lock retention. Default: 6 years (52584h).
	Retention Duration `yaml:"retention"`
	// LegalHold puts new objects under legal hold. Default: false.
	LegalHold bool `yaml:"legal_hold"`
	// SigningKey is the Ed25519 manifest signing key file. Default:
	// <data_dir>/recording-signing.key (generated on first start).
	SigningKey string `yaml:"signing_key"`
	// RetiredSigningKeys is the directory of retired signing keys' public
	// halves (*.pub, PEM), which `custos keys rotate-signing` fills:
	// manifests and audit checkpoints signed with them still verify;
	// nothing new is signed with them. Default:
	// <data_dir>/retired-signing-keys (none when missing).
	RetiredSigningKeys string `yaml:"retired_signing_keys"`
	// Encryption is "vault" (Vault Transit key TransitKey) or "local"
	// (key file LocalKey). Default: "vault" when Vault is configured,
	// otherwise "local".
	Encryption string `yaml:"encryption"`
	// TransitKey is the Vault Transit key. Default: "custos-recordings".
	TransitKey string `yaml:"transit_key"`
	// LocalKey is the key-wrapping key file. Default:
	// <data_dir>/recording-wrap.key (generated on first start).
	LocalKey string `yaml:"local_key"`
	// MaxUploadOutage is how long the object store may be unreachable
	// before new sessions are refused. Default: 5m.
	MaxUploadOutage Duration `yaml:"max_upload_outage"`
	// SpoolMaxBytes caps the spool's chunk bytes: a session whose next
	// event would exceed it ends (fail-closed targets), and new sessions
	// are refused while less than an eighth of it is free. Default: 0, no
	// cap but the disk's.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
}

// S3 configures an S3-compatible object store.
type S3 struct {
	Endpoint  string `yaml:"endpoint"`
	Region    string `yaml:"region"`
	Bucket    string `yaml:"bucket"`
	AccessKey Secret `yaml:"access_key"`
	SecretKey Secret `yaml:"secret_key"`
	// Insecure uses plain HTTP. Default: false.
	Insecure bool `yaml:"insecure"`
	// Prefix is prepended to every object key. Default: empty.
	Prefix string `yaml:"prefix"`
}
