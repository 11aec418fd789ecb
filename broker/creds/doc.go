// Package creds defines the short-lived upstream credentials the proxies
// inject: database leases and SSH certificates, the errors that say why
// none could be had, and target host-key verification. It imports no Vault
// code; the Vault implementation lives in broker/creds/vault, and each
// proxy declares the small interface it consumes.
package creds
