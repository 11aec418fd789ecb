// Package policy decides, from a role's config.Policy, who may request
// access, whether a request is acceptable, who may approve or deny it, when
// the approval threshold is met and when the resulting grant starts and
// ends. Every function is pure: no I/O and no clock reads; the caller
// passes the time in. Refusals are *Error values with a stable,
// machine-readable Code that the API maps to an HTTP status.
//
// The rules, their defaults and examples are written down in docs/policy.md.
package policy
