// Package breakglass owns sealed emergency accounts and their drills.
//
// An account is a privileged principal on one target whose credential only
// Vault holds. It moves sealed → unseal_requested → open → rotating →
// sealed: a custodian asks to unseal it with a reason and an incident id,
// M distinct custodians confirm (each with a fresh second factor), and the
// account opens for a bounded time as a grant of its role to the custodian
// who asked, used through the broker's proxies and recorded like any other.
// At close or timeout the broker revokes the grant, has Vault rotate the
// credential, checks that the old credential no longer logs in and the new
// one does, and reseals. A rotation that fails leaves the account
// compromised-until-rotated, announced again and retried until it works.
//
// State lives in the broker's store, so a restarted broker closes and
// rotates on time; a broker that was down longer than an account's offline
// window rotates it at start as an out-of-band unseal. Drills run the same
// path with a harmless probe instead of a person, on a schedule, and leave
// evidence for the inspection binder.
package breakglass
