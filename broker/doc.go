// Package broker is the domain core of Custos: the request, grant, token and
// session model, the state store contract every store implements, and the
// hash-chained audit record. It parses no wire protocol and talks to no
// external system; subpackages hold config, policy, identity, the access
// lifecycle, credential issuers, audit and the store implementations.
package broker
