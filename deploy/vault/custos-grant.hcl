# custos-grant: the policy of the per-grant tokens the broker creates from the
# custos-grant token role. Such a token reads one database login for one grant
# (or session); its display name ("<user>-<grant>") goes into the generated
# role name, and when it expires at the grant's end Vault revokes the login.
# Its default policy lets it renew its own lease and revoke itself.
path "database/creds/*" {
  capabilities = ["read"]
}
