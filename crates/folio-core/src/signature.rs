//! Signed actions: each replica's Ed25519 key, the replica id it derives, and the one definition of what an
//! action's signature covers.
//!
//! * A replica's key is 32 random bytes (the Ed25519 seed) its host makes and keeps: folio-store in the store's
//!   meta data, the browser as a non-extractable WebCrypto key. This crate never asks for randomness.
//! * Its replica id is [`replica_id_of`] its public key: the first 8 bytes of `blake3(public key)` in lowercase hex,
//!   16 characters like the random ids of earlier versions, so an id cannot be claimed without the key.
//! * An action's signature is Ed25519 over [`signing_bytes`]: [`SIGNING_DOMAIN`] followed by the canonical JSON of
//!   its content (`id, type, input, scope, timestampUtcMs, counter, replica, context`: the action's part of an
//!   operation's hash encoding, see [`crate::hash`]), without the signature fields and without the action's
//!   position in a log, so a rebase (new index, new skip, new hash) keeps every signature valid. The hash chain
//!   does not cover the signature fields either: an operation has the same hash signed or not, so a replica may
//!   sign its action when it leaves (the browser, whose WebCrypto signs asynchronously) and a stored signature
//!   is checked by [`verify`] itself (a changed content or key fails it; a removed one fails a policy that
//!   requires signatures).
//! * [`verify`] checks one action: a signed one must carry a well-formed key and signature, a `replica` derived
//!   from the key, and a signature over its content by that key. Unsigned actions are valid unless the caller's
//!   policy requires signatures ([`check`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::hash::HashedAction;
use crate::operation::Action;

/// The bytes every signature's message starts with, so a folio action signature means nothing elsewhere.
pub const SIGNING_DOMAIN: &[u8] = b"folio/action-signature/v1\n";

/// The message an action's signature signs: [`SIGNING_DOMAIN`] and the canonical JSON of the action's content.
pub fn signing_bytes(action: &Action) -> Vec<u8> {
    let mut out = SIGNING_DOMAIN.to_vec();
    // Serializing this plain struct into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &HashedAction::of(action));
    out
}

/// The replica id a public key derives: the first 8 bytes of blake3 over the key, in lowercase hex.
pub fn replica_id_of(public_key: &[u8; 32]) -> String {
    blake3::hash(public_key).as_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unpadded base64url, the encoding of keys and signatures on the wire.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Why an action's signature is refused. [`SignatureError::code`] names it on the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The action carries no signature where one is required.
    #[error("the action is not signed and signatures are required")]
    Unsigned,
    /// Only one of `signer` and `signature` is present.
    #[error("the action carries a signer without a signature or a signature without a signer")]
    Incomplete,
    /// `signer` is not 32 bytes of unpadded base64url, or not a valid Ed25519 public key.
    #[error("the signer is not an Ed25519 public key (32 bytes, unpadded base64url): {0}")]
    BadSigner(String),
    /// `signature` is not 64 bytes of unpadded base64url.
    #[error("the signature is not 64 bytes of unpadded base64url: {0}")]
    Malformed(String),
    /// The action's `replica` is not the id its signer's key derives.
    #[error(
        "the action's replica {:?} is not the id its signer's key derives ({derived})",
        .replica.as_deref().unwrap_or("")
    )]
    ReplicaMismatch {
        /// The replica the action names (if any).
        replica: Option<String>,
        /// The id the key derives.
        derived: String,
    },
    /// The signature does not verify over the action's content with the signer's key.
    #[error("the signature does not match the action's content and signer")]
    Invalid,
}

impl SignatureError {
    /// The code on the wire: `SIGNATURE_REQUIRED` for an unsigned action under a policy that requires signatures,
    /// `BAD_SIGNATURE` for everything else.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Unsigned => "SIGNATURE_REQUIRED",
            _ => "BAD_SIGNATURE",
        }
    }
}

/// Checks `action`'s signature: `Ok(true)` for a valid one, `Ok(false)` for an unsigned action, an error for a
/// signature that is malformed, by a key the action's replica does not derive from, or not over its content.
pub fn verify(action: &Action) -> Result<bool, SignatureError> {
    let (signer, signature) = match (&action.signer, &action.signature) {
        (None, None) => return Ok(false),
        (Some(k), Some(s)) => (k, s),
        _ => return Err(SignatureError::Incomplete),
    };
    let key = decode_fixed::<32>(signer).map_err(SignatureError::BadSigner)?;
    let sig = decode_fixed::<64>(signature).map_err(SignatureError::Malformed)?;
    let derived = replica_id_of(&key);
    if action.replica.as_deref() != Some(derived.as_str()) {
        return Err(SignatureError::ReplicaMismatch {
            replica: action.replica.clone(),
            derived,
        });
    }
    let key = VerifyingKey::from_bytes(&key).map_err(|_| SignatureError::BadSigner("not a curve point".into()))?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    // verify_strict: no small-order keys, no malleable signatures (one signature per action and key).
    key.verify_strict(&signing_bytes(action), &sig)
        .map_err(|_| SignatureError::Invalid)?;
    Ok(true)
}

/// [`verify`] under a policy: with `require`, an unsigned action is refused too.
pub fn check(action: &Action, require: bool) -> Result<(), SignatureError> {
    match verify(action)? {
        false if require => Err(SignatureError::Unsigned),
        _ => Ok(()),
    }
}

fn decode_fixed<const N: usize>(text: &str) -> Result<[u8; N], String> {
    // The encoded length of N bytes, checked first so that a huge field costs nothing to refuse.
    let expected = (N * 4).div_ceil(3);
    if text.len() != expected {
        return Err(format!("{} characters, not {expected}", text.len()));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("not unpadded base64url: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes, not {N}", b.len()))
}

/// A replica's Ed25519 key pair and the id it derives.
#[derive(Clone)]
pub struct ReplicaKey {
    signing: SigningKey,
    public: String,
    replica_id: String,
}

impl std::fmt::Debug for ReplicaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("ReplicaKey")
            .field("public", &self.public)
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

impl ReplicaKey {
    /// The key pair of a 32-byte seed (random bytes the host made).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public_bytes = signing.verifying_key().to_bytes();
        Self {
            public: encode(&public_bytes),
            replica_id: replica_id_of(&public_bytes),
            signing,
        }
    }

    /// The key pair of a seed kept as unpadded base64url ([`ReplicaKey::seed_text`]).
    pub fn from_seed_text(text: &str) -> Result<Self, SignatureError> {
        let seed = decode_fixed::<32>(text).map_err(SignatureError::BadSigner)?;
        Ok(Self::from_seed(&seed))
    }

    /// The seed as unpadded base64url, for the host to keep. Secret.
    pub fn seed_text(&self) -> String {
        encode(self.signing.as_bytes())
    }

    /// The public key, unpadded base64url (an action's `signer`).
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The replica id the public key derives.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Signs `action` as this replica: sets its `replica` (to this key's id), `signer` and `signature`. Anything
    /// changed in its content afterwards invalidates the signature.
    pub fn sign(&self, action: &mut Action) {
        action.replica = Some(self.replica_id.clone());
        action.signer = Some(self.public.clone());
        action.signature = None;
        let sig = self.signing.sign(&signing_bytes(action));
        action.signature = Some(encode(&sig.to_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::HlcTimestamp;
    use crate::ids::Scope;
    use serde_json::json;

    fn action() -> Action {
        Action::new(
            "SET",
            json!({"b": 1, "a": [1, 2]}),
            Scope::Global,
            HlcTimestamp::new(5, 1),
        )
    }

    #[test]
    fn signed_actions_verify_and_any_change_breaks_them() {
        let key = ReplicaKey::from_seed(&[7; 32]);
        let mut a = action();
        key.sign(&mut a);
        assert_eq!(verify(&a), Ok(true));
        assert_eq!(a.replica.as_deref(), Some(key.replica_id()));
        assert_eq!(key.replica_id().len(), 16);
        let mut changed = a.clone();
        changed.input = json!({"b": 2});
        assert_eq!(verify(&changed), Err(SignatureError::Invalid));
        let mut changed = a.clone();
        changed.counter += 1;
        assert_eq!(verify(&changed), Err(SignatureError::Invalid));
        let mut changed = a.clone();
        changed.context.0.insert("x".into(), HlcTimestamp::new(1, 0));
        assert_eq!(verify(&changed), Err(SignatureError::Invalid));
        // The same signature under another key (whose id the action then names): refused.
        let other = ReplicaKey::from_seed(&[8; 32]);
        let mut replayed = a.clone();
        replayed.signer = Some(other.public().to_owned());
        replayed.replica = Some(other.replica_id().to_owned());
        assert_eq!(verify(&replayed), Err(SignatureError::Invalid));
        // Another replica's id without its key.
        let mut stolen = a.clone();
        stolen.replica = Some(other.replica_id().to_owned());
        assert!(matches!(verify(&stolen), Err(SignatureError::ReplicaMismatch { .. })));
        assert_eq!(check(&action(), false), Ok(()));
        assert_eq!(check(&action(), true), Err(SignatureError::Unsigned));
        assert_eq!(SignatureError::Unsigned.code(), "SIGNATURE_REQUIRED");
    }

    #[test]
    fn the_signing_bytes_are_fixed() {
        // Pinned: changing the canonical content breaks every stored signature.
        let mut a = action();
        a.id = uuid::Uuid::from_u128(1);
        a.replica = Some("r".into());
        let text = String::from_utf8(signing_bytes(&a)).unwrap();
        assert_eq!(
            text,
            "folio/action-signature/v1\n{\"id\":\"00000000-0000-0000-0000-000000000001\",\"type\":\"SET\",\
             \"input\":{\"a\":[1,2],\"b\":1},\"scope\":\"global\",\"timestampUtcMs\":\"5\",\"counter\":1,\
             \"replica\":\"r\"}"
        );
        // The signature fields are not part of it.
        a.signer = Some("k".into());
        a.signature = Some("s".into());
        assert_eq!(String::from_utf8(signing_bytes(&a)).unwrap(), text);
    }

    #[test]
    fn malformed_fields_are_named() {
        let key = ReplicaKey::from_seed(&[7; 32]);
        let mut a = action();
        key.sign(&mut a);
        let with = |signer: Option<&str>, sig: Option<&str>| {
            let mut b = a.clone();
            b.signer = signer.map(str::to_owned);
            b.signature = sig.map(str::to_owned);
            verify(&b)
        };
        let sig = a.signature.clone().unwrap();
        let signer = a.signer.clone().unwrap();
        assert!(matches!(
            with(Some("!!"), Some(&sig)),
            Err(SignatureError::BadSigner(_))
        ));
        assert!(matches!(
            with(Some(&"A".repeat(1 << 20)), Some(&sig)),
            Err(SignatureError::BadSigner(_))
        ));
        assert!(matches!(
            with(Some(&"*".repeat(43)), Some(&sig)),
            Err(SignatureError::BadSigner(_))
        ));
        assert!(matches!(
            with(Some(&signer), Some(&sig[..85])),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(with(Some(&signer), None), Err(SignatureError::Incomplete)));
        assert!(matches!(with(None, Some(&sig)), Err(SignatureError::Incomplete)));
        assert_eq!(
            ReplicaKey::from_seed_text(&key.seed_text()).unwrap().public(),
            key.public()
        );
    }
}
