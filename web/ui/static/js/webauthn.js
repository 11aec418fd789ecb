// WebAuthn ceremonies: the broker's options (JSON, binary fields as
// base64url) to the browser's navigator.credentials calls, and the
// credential back to JSON for the broker.
import { api, me } from './lib.js';

function fromB64url(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((s.length + 3) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out.buffer;
}

function toB64url(buf) {
  if (!buf) return undefined;
  let s = '';
  for (const c of new Uint8Array(buf)) s += String.fromCharCode(c);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const withIDs = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

// credentialJSON is a PublicKeyCredential as the broker reads it.
function credentialJSON(c) {
  const r = c.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    if (r.getTransports) response.transports = r.getTransports();
  } else {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle) response.userHandle = toB64url(r.userHandle);
  }
  return { id: c.id, rawId: toB64url(c.rawId), type: c.type, authenticatorAttachment: c.authenticatorAttachment || undefined,
    clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {}, response };
}

// unsupported explains a browser without WebAuthn.
function requireWebAuthn() {
  if (!window.PublicKeyCredential || !navigator.credentials) {
    throw new Error('This browser cannot use passkeys (WebAuthn needs https and a supported browser).');
  }
}

// withStepUp calls fn(); when the broker asks for a step-up, it confirms
// with an existing passkey bound to (action, the caller) and calls
// fn(step_up) once more. Without a passkey the broker's refusal stands.
export async function withStepUp(action, fn) {
  try {
    return await fn(undefined);
  } catch (e) {
    if (e.code !== 'step_up_required') throw e;
    let proof;
    try {
      proof = await stepUp(action, (await me()).user);
    } catch (_) {
      throw e;
    }
    return fn(proof);
  }
}

// register runs a registration and stores the passkey under name. Adding
// a passkey needs a recent sign-in or a confirmation with one already
// registered.
export async function registerPasskey(name) {
  requireWebAuthn();
  const { options } = await withStepUp('passkey.add', (proof) =>
    api('POST', '/api/v1/passkeys/begin', proof ? { step_up: proof } : undefined));
  const pk = options.publicKey;
  const publicKey = { ...pk, challenge: fromB64url(pk.challenge), user: { ...pk.user, id: fromB64url(pk.user.id) },
    excludeCredentials: withIDs(pk.excludeCredentials) };
  const cred = await navigator.credentials.create({ publicKey });
  return api('POST', '/api/v1/passkeys', { name, credential: credentialJSON(cred) });
}

// stepUp asks the broker for a challenge bound to (action, objectID),
// has the authenticator sign it with user verification, and returns the
// step_up field for the action's call.
export async function stepUp(action, objectID) {
  requireWebAuthn();
  const { options } = await api('POST', '/api/v1/stepup/begin', { action, object_id: objectID });
  const pk = options.publicKey;
  const publicKey = { ...pk, challenge: fromB64url(pk.challenge), allowCredentials: withIDs(pk.allowCredentials) };
  const cred = await navigator.credentials.get({ publicKey });
  return { assertion: credentialJSON(cred) };
}
