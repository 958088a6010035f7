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
//! * A replica that signs many actions at once signs them as a *batch* ([`ReplicaKey::sign_all`]): one Ed25519
//!   signature over the root of a Merkle tree whose leaves are the actions' contents ([`BATCH_DOMAIN`], the number
//!   of leaves, the root), and each action's `signature` field carries that signature followed by its place in the
//!   tree (its index, the number of leaves and the sibling hashes up to the root). Each action still verifies on
//!   its own, wherever it travels alone (a pull page that splits a batch, a reader allowed only some of its
//!   documents, `folio verify`), and a verifier of many ([`verify_all`]) checks each batch's signature once:
//!   receiving 5,000 actions signed 32 at a time costs 157 Ed25519 checks, not 5,000 (verification was ~95% of an
//!   integration's CPU for signed entries, and the browser's 10,000-operation exchange spent most of its time in
//!   it). The signature still covers content, not position: a rebase keeps it valid.
//! * [`verify`] checks one action: a signed one must carry a well-formed key and signature, a `replica` derived
//!   from the key, and a signature over its content by that key. Unsigned actions are valid unless the caller's
//!   policy requires signatures ([`check`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};

use crate::hash::{with_content_buf, write_hashed_action};
use crate::operation::Action;

/// The bytes every signature's message starts with, so a folio action signature means nothing elsewhere.
pub const SIGNING_DOMAIN: &[u8] = b"folio/action-signature/v1\n";

/// The bytes every batch signature's message starts with ([`ReplicaKey::sign_all`]); distinct from
/// [`SIGNING_DOMAIN`], so one action's signature can never pass for a batch's or the other way round.
pub const BATCH_DOMAIN: &[u8] = b"folio/action-batch-signature/v1\n";

/// The most actions [`ReplicaKey::sign_all`] puts under one signature: each action's proof then holds at most five
/// sibling hashes (164 bytes beside the 64 of the signature), and a receiver checks one signature for 32 actions.
/// Verifiers take batches of up to 65,535 (the count is two bytes).
pub const BATCH_LEAVES: usize = 32;

/// The message an action's signature signs: [`SIGNING_DOMAIN`] and the canonical JSON of the action's content.
pub fn signing_bytes(action: &Action) -> Vec<u8> {
    let mut out = SIGNING_DOMAIN.to_vec();
    write_hashed_action(&mut out, action);
    out
}

/// An action's leaf in a batch's tree: blake3 over a zero byte and [`signing_bytes`] (internal nodes hash a one
/// byte and two children, so a leaf can never pass for a node).
fn leaf(action: &Action) -> [u8; 32] {
    with_content_buf(|buf| {
        buf.push(0);
        buf.extend_from_slice(SIGNING_DOMAIN);
        write_hashed_action(buf, action);
        *blake3::hash(buf).as_bytes()
    })
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[1]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// The message a batch signature signs: [`BATCH_DOMAIN`], the number of leaves (u16, little-endian) and the root.
fn batch_message(leaves: u16, root: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_DOMAIN.len() + 34);
    out.extend_from_slice(BATCH_DOMAIN);
    out.extend_from_slice(&leaves.to_le_bytes());
    out.extend_from_slice(root);
    out
}

/// The levels at which leaf `index` of `width` leaves has a sibling, from the leaf up, each as whether the sibling
/// is on the left. The tree pairs each level's nodes from the left; a level's last node without a partner goes up
/// unchanged (no sibling at that level). What a proof holds ([`path_len`]) and how it leads to the root
/// ([`Form::message`]) both walk it.
fn path(mut index: usize, mut width: usize) -> impl Iterator<Item = bool> {
    std::iter::from_fn(move || {
        while width > 1 {
            let step = (index % 2 == 1 || index + 1 < width).then_some(index % 2 == 1);
            index /= 2;
            width = width.div_ceil(2);
            if step.is_some() {
                return step;
            }
        }
        None
    })
}

/// How many sibling hashes the proof of leaf `index` of `leaves` holds.
fn path_len(index: usize, width: usize) -> usize {
    path(index, width).count()
}

/// The actions of one batch signature: the message to sign, and each action's `signature` text once signed.
/// [`batch_plan`] makes them; [`ReplicaKey::sign_all`] and hosts that sign with their own Ed25519 (the browser's
/// WebCrypto key, which never leaves WebCrypto) use them.
#[derive(Debug, Clone)]
pub struct BatchGroup {
    /// How many actions it covers (the slice of [`batch_plan`]'s input that follows the previous group's).
    pub len: usize,
    message: Vec<u8>,
    /// The tree's levels, leaves first; empty for a group of one (signed as one action, no proof).
    levels: Vec<Vec<[u8; 32]>>,
}

impl BatchGroup {
    /// The bytes to sign with the replica's key.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// The `signature` field of the group's action `i`, given the Ed25519 signature of [`BatchGroup::message`]:
    /// the signature, then (for a group of two or more) the leaf count and `i` (u16, little-endian each) and the
    /// sibling hashes from the leaf up, all in unpadded base64url.
    pub fn signature_text(&self, signature: &[u8; 64], i: usize) -> String {
        if self.levels.is_empty() {
            return encode(signature);
        }
        let mut out = Vec::with_capacity(68 + 32 * self.levels.len());
        out.extend_from_slice(signature);
        out.extend_from_slice(&(self.len as u16).to_le_bytes());
        out.extend_from_slice(&(i as u16).to_le_bytes());
        let mut index = i;
        for level in &self.levels[..self.levels.len() - 1] {
            if let Some(sibling) = level.get(index ^ 1) {
                out.extend_from_slice(sibling);
            }
            index /= 2;
        }
        encode(&out)
    }
}

/// `actions` in groups of up to [`BATCH_LEAVES`], each with the message its one signature signs. The actions must
/// carry the `replica` (and `signer`) they will be signed with: the leaves cover their content as it is now.
pub fn batch_plan(actions: &[&Action]) -> Vec<BatchGroup> {
    actions
        .chunks(BATCH_LEAVES)
        .map(|group| {
            if let [one] = group {
                return BatchGroup {
                    len: 1,
                    message: signing_bytes(one),
                    levels: Vec::new(),
                };
            }
            let mut levels = vec![group.iter().map(|a| leaf(a)).collect::<Vec<_>>()];
            while let Some(top) = levels.last().filter(|l| l.len() > 1) {
                let up = top
                    .chunks(2)
                    .map(|pair| pair.get(1).map_or(pair[0], |right| node(&pair[0], right)))
                    .collect();
                levels.push(up);
            }
            let root = levels.last().and_then(|l| l.first()).copied().unwrap_or_default();
            BatchGroup {
                len: group.len(),
                message: batch_message(group.len() as u16, &root),
                levels,
            }
        })
        .collect()
}

/// The replica id a public key derives: the first 8 bytes of blake3 over the key, in lowercase hex.
pub fn replica_id_of(public_key: &[u8; 32]) -> String {
    // The 16 characters are ASCII hex digits.
    String::from_utf8_lossy(&replica_id_bytes(public_key)).into_owned()
}

/// [`replica_id_of`] as its 16 ASCII bytes, made without allocating (every signed action read checks it).
fn replica_id_bytes(public_key: &[u8; 32]) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = blake3::hash(public_key);
    let mut out = [0u8; 16];
    for (i, b) in hash.as_bytes()[..8].iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
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
    /// `signature` is not 64 bytes of unpadded base64url, nor a batch signature followed by a well-formed proof.
    #[error("the signature is not 64 bytes of unpadded base64url (or a batch signature and its proof): {0}")]
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
    let Some(form) = form(action)? else {
        return Ok(false);
    };
    let key = VerifyingKey::from_bytes(&form.key).map_err(|_| not_a_point())?;
    equation(&key, &form.message(action), &form.signature)?;
    Ok(true)
}

/// [`verify`] of many actions, in their order: each signer's key is decoded once, each batch signature
/// ([`ReplicaKey::sign_all`]) checked once for all its actions, and on a host with several cores a large batch is
/// split between threads (verification is ~95% of an integration's CPU for signed
/// entries). Every action gets exactly [`verify`]'s answer.
pub fn verify_all(actions: &[&Action]) -> Vec<Result<bool, SignatureError>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        const PER_THREAD: usize = 128;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(actions.len() / PER_THREAD);
        if threads > 1 {
            let size = actions.len().div_ceil(threads);
            return std::thread::scope(|s| {
                let parts: Vec<_> = actions
                    .chunks(size)
                    .map(|part| s.spawn(move || verify_in_order(part)))
                    .collect();
                parts
                    .into_iter()
                    // A panic in a verifying thread is a bug in ed25519-dalek or here: it goes on unwinding.
                    .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
        }
    }
    verify_in_order(actions)
}

fn verify_in_order(actions: &[&Action]) -> Vec<Result<bool, SignatureError>> {
    let mut keys = Keys::default();
    actions.iter().map(|a| keys.verify(a, None)).collect()
}

/// What a host verifies for a signed action with its own Ed25519 (RFC 8032's cofactorless check that compares
/// R's encoding, as BoringSSL behind Chromium's WebCrypto does): [`host_check`] gives it, [`verify_all_with`] takes
/// the host's verdicts. The browser verifies with WebCrypto at ~90 µs an action where this crate compiled to
/// WebAssembly takes ~300.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    /// The signer's public key.
    pub key: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
    /// The signed message: [`signing_bytes`], or for an action signed in a batch the batch's message (the same for
    /// all its actions, so a host verifies it once).
    pub message: Vec<u8>,
}

/// The key, signature and message a host verifies for `action`; `None` for an unsigned action or one whose
/// fields are malformed or name another replica ([`verify_all_with`] answers those itself).
pub fn host_check(action: &Action) -> Option<HostCheck> {
    let form = form(action).ok()??;
    Some(HostCheck {
        key: form.key,
        signature: form.signature,
        message: form.message(action),
    })
}

/// [`verify_all`] given a host's verdicts on the signatures' equations (`verdicts[i]` for `actions[i]`: `Some(valid)`
/// when the host verified [`host_check`]'s parts, `None` or missing when not). A verdict is taken only where it must
/// be `verify_strict`'s answer: the signature's `s` canonical, `R` not a point of small order, the key canonically
/// encoded and not of small order (checks without a scalar multiplication); any other action is verified here in
/// full, so every answer is exactly [`verify`]'s whatever the host says about such edge cases.
pub fn verify_all_with(actions: &[&Action], verdicts: &[Option<bool>]) -> Vec<Result<bool, SignatureError>> {
    let mut keys = Keys::default();
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| keys.verify(a, verdicts.get(i).copied().flatten()))
        .collect()
}

/// A distinct signature check: signer key, signature and signed message.
type CheckKey = ([u8; 32], [u8; 64], Vec<u8>);

/// The signed actions of a batch read once for a host that verifies with its own Ed25519 (the browser's WebCrypto):
/// each action's form checked and its message made once, the distinct checks listed once (the actions of a batch
/// signature share one), and then [`verify_all_with`]'s answers from the host's verdicts on the checks, without
/// reading any action again.
pub struct HostChecks {
    checks: Vec<(HostCheck, Vec<u32>)>,
    /// Per action: unsigned (`Ok(None)`), its check (`Ok(Some(i))`), or what its form is refused for.
    of: Vec<Result<Option<usize>, SignatureError>>,
}

impl HostChecks {
    /// Reads `actions`' signatures.
    pub fn new(actions: &[&Action]) -> Self {
        let mut checks: Vec<(HostCheck, Vec<u32>)> = Vec::new();
        let mut seen: std::collections::HashMap<CheckKey, usize> = std::collections::HashMap::new();
        let of = actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let Some(form) = form(action)? else {
                    return Ok(None);
                };
                let message = form.message(action);
                let at =
                    *seen
                        .entry((form.key, form.signature, message))
                        .or_insert_with_key(|(key, signature, message)| {
                            checks.push((
                                HostCheck {
                                    key: *key,
                                    signature: *signature,
                                    message: message.clone(),
                                },
                                Vec::new(),
                            ));
                            checks.len() - 1
                        });
                checks[at].1.push(i as u32);
                Ok(Some(at))
            })
            .collect();
        Self { checks, of }
    }

    /// The distinct checks, each with the indexes of the actions it decides.
    pub fn checks(&self) -> &[(HostCheck, Vec<u32>)] {
        &self.checks
    }

    /// Each action's answer, exactly [`verify`]'s, given the host's verdicts on the checks (`verdicts[i]` for
    /// `checks()[i]`: `Some(valid)`, or `None`/missing when the host did not verify it). A verdict stands only where it
    /// must be `verify_strict`'s answer ([`verify_all_with`]); any other check is verified here, once.
    pub fn answers(&self, verdicts: &[Option<bool>]) -> Vec<Result<bool, SignatureError>> {
        let mut keys = Keys::default();
        let decided: Vec<Result<bool, SignatureError>> = self
            .checks
            .iter()
            .enumerate()
            .map(|(i, (check, _))| {
                let form = Form {
                    key: check.key,
                    signature: check.signature,
                    proof: None,
                };
                keys.check(&form, &check.message, verdicts.get(i).copied().flatten())
            })
            .collect();
        self.of
            .iter()
            .map(|of| match of {
                Ok(None) => Ok(false),
                Ok(Some(check)) => decided[*check].clone(),
                Err(e) => Err(e.clone()),
            })
            .collect()
    }
}

/// Decoded keys of one run of verifications, each with whether a host's verdict may stand for it (canonical, not of
/// small order), and the answers for batch signatures already checked (by key, signature and message).
#[derive(Default)]
struct Keys {
    keys: std::collections::HashMap<[u8; 32], Option<(VerifyingKey, bool)>>,
    batches: std::collections::HashMap<CheckKey, Result<bool, SignatureError>>,
}

impl Keys {
    fn verify(&mut self, action: &Action, host: Option<bool>) -> Result<bool, SignatureError> {
        let Some(form) = form(action)? else {
            return Ok(false);
        };
        let message = form.message(action);
        if form.proof.is_none() {
            return self.check(&form, &message, host);
        }
        let seen = (form.key, form.signature, message);
        if let Some(answer) = self.batches.get(&seen) {
            return answer.clone();
        }
        let answer = self.check(&form, &seen.2, host);
        self.batches.insert(seen, answer.clone());
        answer
    }

    fn check(&mut self, form: &Form, message: &[u8], host: Option<bool>) -> Result<bool, SignatureError> {
        #[cfg(test)]
        tests::CHECKS.with(|c| c.set(c.get() + 1));
        let (key, strong) = self
            .keys
            .entry(form.key)
            .or_insert_with(|| {
                VerifyingKey::from_bytes(&form.key)
                    .ok()
                    .map(|k| (k, canonical_y(&form.key) && !k.is_weak()))
            })
            .as_ref()
            .ok_or_else(not_a_point)?;
        // Where the key is sound and R is not of small order, RFC 8032's cofactorless check comparing R's bytes
        // (a host's, or ed25519-dalek's `verify`, which skips `verify_strict`'s decompression of R: ~10% of a
        // verification) answers as `verify_strict`; elsewhere `verify_strict` itself decides.
        let plain = *strong && host_verdict_stands(&form.signature);
        match host {
            Some(true) if plain => Ok(true),
            Some(false) if plain => Err(SignatureError::Invalid),
            _ if plain => key
                .verify(message, &ed25519_dalek::Signature::from_bytes(&form.signature))
                .map(|()| true)
                .map_err(|_| SignatureError::Invalid),
            _ => equation(key, message, &form.signature).map(|()| true),
        }
    }
}

/// Whether a cofactorless verification comparing R's bytes answers as `verify_strict` for this signature: `s` below
/// the group order (`verify_strict` refuses others) and `R` not an encoding of a point of small order (likewise).
fn host_verdict_stands(signature: &[u8; 64]) -> bool {
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    let canonical_s: bool = curve25519_dalek::Scalar::from_canonical_bytes(s).is_some().into();
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    canonical_s && !small_order_encoding(&r)
}

/// 2^255 - 19, little-endian.
const P: [u8; 32] = {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    p
};

/// Whether an encoding's y (its low 255 bits) is below p.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    y.iter().rev().lt(P.iter().rev())
}

/// Whether `bytes` decodes (or fails to decode) to a point of small order, without decompressing it: the eight
/// points of small order have five y coordinates (1, -1, 0 and ±y₈), each x determined up to its sign by y, so an
/// encoding is one of theirs exactly when its y, reduced mod p, is one of the five (the non-canonical encodings
/// p and p + 1 reduce to 0 and 1; the sign bit changes nothing).
fn small_order_encoding(bytes: &[u8; 32]) -> bool {
    static YS: std::sync::OnceLock<Vec<[u8; 32]>> = std::sync::OnceLock::new();
    let ys = YS.get_or_init(|| {
        let mut ys: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut y = p.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        let mut p1 = P;
        p1[0] = 0xee;
        ys.extend([P, p1]);
        ys
    });
    let mut y = *bytes;
    y[31] &= 0x7f;
    ys.contains(&y)
}

/// The checks of [`verify`] that need no curve arithmetic: both fields present and well formed, and the action's
/// `replica` derived from its signer. For a host that has just signed with its own key (the browser, whose
/// WebCrypto key signed the action's [`signing_bytes`]): the signature is right by construction, so verifying it
/// again would only spend ~0.3 ms of WebAssembly per action. `Ok(false)` for an unsigned action.
pub fn check_form(action: &Action) -> Result<bool, SignatureError> {
    Ok(form(action)?.is_some())
}

/// A signed action's decoded key and signature, and its place in a batch when it was signed in one.
struct Form {
    key: [u8; 32],
    signature: [u8; 64],
    proof: Option<Proof>,
}

/// An action's place in the tree of a batch signature: the leaf count, its index and the sibling hashes up.
struct Proof {
    leaves: u16,
    index: u16,
    siblings: Vec<[u8; 32]>,
}

impl Form {
    /// What the signature signs for `action`: [`signing_bytes`], or the batch's message with the root its proof
    /// leads to from the action's leaf.
    fn message(&self, action: &Action) -> Vec<u8> {
        let Some(proof) = &self.proof else {
            return signing_bytes(action);
        };
        let mut hash = leaf(action);
        // The count of siblings was checked against `path_len` when the proof was read.
        for (left, sibling) in path(usize::from(proof.index), usize::from(proof.leaves)).zip(&proof.siblings) {
            hash = if left {
                node(sibling, &hash)
            } else {
                node(&hash, sibling)
            };
        }
        batch_message(proof.leaves, &hash)
    }
}

/// The longest `signature` text: 64 bytes, the proof's four, and 16 siblings (65,535 leaves), in base64url.
const MAX_SIGNATURE_TEXT: usize = ((64 + 4 + 32 * 16) * 4usize).div_ceil(3);

/// Reads a `signature` field: 64 bytes alone, or a batch signature followed by its proof.
fn read_signature(text: &str) -> Result<([u8; 64], Option<Proof>), String> {
    if text.len() > MAX_SIGNATURE_TEXT {
        return Err(format!("{} characters, more than {MAX_SIGNATURE_TEXT}", text.len()));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("not unpadded base64url: {e}"))?;
    let (head, rest) = bytes.split_at(bytes.len().min(64));
    let signature: [u8; 64] = head.try_into().map_err(|_| format!("{} bytes, not 64", bytes.len()))?;
    if rest.is_empty() {
        return Ok((signature, None));
    }
    let malformed = |why: String| format!("a batch signature's proof {why}");
    let [l0, l1, i0, i1, hashes @ ..] = rest else {
        return Err(malformed(format!(
            "of {} bytes has no leaf count and index",
            rest.len()
        )));
    };
    let (leaves, index) = (u16::from_le_bytes([*l0, *l1]), u16::from_le_bytes([*i0, *i1]));
    if leaves < 2 || index >= leaves {
        return Err(malformed(format!("names leaf {index} of {leaves}")));
    }
    let expected = path_len(usize::from(index), usize::from(leaves));
    if hashes.len() != 32 * expected {
        return Err(malformed(format!(
            "holds {} bytes of hashes where leaf {index} of {leaves} has {expected} of 32 bytes",
            hashes.len()
        )));
    }
    let siblings = hashes
        .chunks_exact(32)
        .map(|h| <[u8; 32]>::try_from(h).unwrap_or_default())
        .collect();
    Ok((
        signature,
        Some(Proof {
            leaves,
            index,
            siblings,
        }),
    ))
}

fn form(action: &Action) -> Result<Option<Form>, SignatureError> {
    let (signer, signature) = match (&action.signer, &action.signature) {
        (None, None) => return Ok(None),
        (Some(k), Some(s)) => (k, s),
        _ => return Err(SignatureError::Incomplete),
    };
    let key = decode_fixed::<32>(signer).map_err(SignatureError::BadSigner)?;
    let (signature, proof) = read_signature(signature).map_err(SignatureError::Malformed)?;
    let derived = replica_id_bytes(&key);
    if action.replica.as_deref().map(str::as_bytes) != Some(&derived[..]) {
        return Err(SignatureError::ReplicaMismatch {
            replica: action.replica.clone(),
            derived: replica_id_of(&key),
        });
    }
    Ok(Some(Form { key, signature, proof }))
}

fn not_a_point() -> SignatureError {
    SignatureError::BadSigner("not a curve point".into())
}

fn equation(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Result<(), SignatureError> {
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    // verify_strict: no small-order keys, no malleable signatures (one signature per action and key).
    key.verify_strict(message, &sig).map_err(|_| SignatureError::Invalid)
}

/// [`verify`] under a policy: with `require`, an unsigned action is refused too.
pub fn check(action: &Action, require: bool) -> Result<(), SignatureError> {
    match verify(action)? {
        false if require => Err(SignatureError::Unsigned),
        _ => Ok(()),
    }
}

/// [`check`] of many actions, in their order (see [`verify_all`]).
pub fn check_all(actions: &[&Action], require: bool) -> Vec<Result<(), SignatureError>> {
    verify_all(actions)
        .into_iter()
        .map(|answer| match answer? {
            false if require => Err(SignatureError::Unsigned),
            _ => Ok(()),
        })
        .collect()
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

    /// Signs `actions` as this replica, [`BATCH_LEAVES`] under one signature ([`batch_plan`]; a lone action gets
    /// [`ReplicaKey::sign`]'s signature): each is stamped with this key's id and signer first, and each verifies on
    /// its own afterwards, as [`ReplicaKey::sign`]'s do.
    pub fn sign_all<'a>(&self, actions: impl IntoIterator<Item = &'a mut Action>) {
        let mut actions: Vec<&mut Action> = actions.into_iter().collect();
        for action in actions.iter_mut() {
            action.replica = Some(self.replica_id.clone());
            action.signer = Some(self.public.clone());
            action.signature = None;
        }
        let plan = batch_plan(&actions.iter().map(|a| &**a).collect::<Vec<_>>());
        let mut rest = actions.as_mut_slice();
        for group in plan {
            let (these, after) = rest.split_at_mut(group.len);
            let sig = self.signing.sign(group.message()).to_bytes();
            for (i, action) in these.iter_mut().enumerate() {
                action.signature = Some(group.signature_text(&sig, i));
            }
            rest = after;
        }
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

    #[test]
    fn verify_all_answers_what_verify_answers_for_each_action_in_order() {
        let keys = [ReplicaKey::from_seed(&[1; 32]), ReplicaKey::from_seed(&[2; 32])];
        let mut actions = Vec::new();
        for i in 0..600u32 {
            let mut a = action();
            a.input = json!({"id": format!("item-{i}"), "title": "t"});
            match i % 5 {
                0 => {} // unsigned
                1 | 2 => keys[(i % 2) as usize].sign(&mut a),
                3 => {
                    keys[0].sign(&mut a);
                    a.input = json!({"id": "changed"});
                }
                _ => {
                    keys[1].sign(&mut a);
                    a.replica = Some(keys[0].replica_id().to_owned());
                }
            }
            actions.push(a);
        }
        let refs: Vec<&Action> = actions.iter().collect();
        // 600 actions: split between threads on a host with several cores; 5 take the one-thread path.
        for part in [&refs[..], &refs[..5]] {
            let one_by_one: Vec<_> = part.iter().map(|a| verify(a)).collect();
            assert_eq!(verify_all(part), one_by_one);
        }
        let answers = verify_all(&refs);
        assert_eq!(answers.iter().filter(|r| matches!(r, Ok(true))).count(), 240);
        assert_eq!(
            answers.iter().filter(|r| **r == Err(SignatureError::Invalid)).count(),
            120
        );
    }

    #[test]
    fn check_form_checks_everything_but_the_curve_equation() {
        let key = ReplicaKey::from_seed(&[3; 32]);
        let mut a = action();
        assert_eq!(check_form(&a), Ok(false));
        key.sign(&mut a);
        assert_eq!(check_form(&a), Ok(true));
        // Content changed after signing: only `verify` sees it.
        let mut changed = a.clone();
        changed.input = json!({"id": "other"});
        assert_eq!(check_form(&changed), Ok(true));
        assert_eq!(verify(&changed), Err(SignatureError::Invalid));
        let mut stolen = a.clone();
        stolen.replica = Some("0123456789abcdef".into());
        assert!(matches!(
            check_form(&stolen),
            Err(SignatureError::ReplicaMismatch { .. })
        ));
        stolen.signature = None;
        assert_eq!(check_form(&stolen), Err(SignatureError::Incomplete));
    }

    #[test]
    fn small_order_encodings_are_exactly_those_dalek_decompresses_to_small_order_points() {
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let dalek = |b: [u8; 32]| CompressedEdwardsY(b).decompress().map(|p| p.is_small_order());
        let mut cases: Vec<[u8; 32]> = Vec::new();
        for p in curve25519_dalek::constants::EIGHT_TORSION {
            let b = p.compress().to_bytes();
            cases.push(b);
            let mut flipped = b;
            flipped[31] ^= 0x80;
            cases.push(flipped);
        }
        for low in [0xed, 0xee, 0xef, 0xff] {
            for sign in [0, 0x80] {
                let mut b = P;
                b[0] = low;
                b[31] |= sign;
                cases.push(b);
            }
        }
        // Points of large order (multiples of the base point) and arbitrary bytes.
        let mut seed = [0u8; 32];
        for i in 0..2000u32 {
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let h = *blake3::hash(&seed).as_bytes();
            cases.push(h);
            cases.push(ReplicaKey::from_seed(&h).signing.verifying_key().to_bytes());
        }
        let mut small = 0;
        for b in cases {
            match dalek(b) {
                Some(true) => {
                    small += 1;
                    assert!(small_order_encoding(&b), "{b:02x?} is of small order");
                }
                Some(false) => assert!(!small_order_encoding(&b), "{b:02x?} is not of small order"),
                // Not a point: no signature with this R or key verifies anywhere.
                None => {}
            }
        }
        // The 8 points, their sign-flipped encodings and p, p + 1 with both signs.
        assert!(small >= 18, "{small}");
        assert!(canonical_y(&[0; 32]));
        let mut below = P;
        below[0] = 0xec;
        assert!(canonical_y(&below));
        assert!(!canonical_y(&P));
    }

    #[test]
    fn a_hosts_verdict_stands_only_where_it_must_be_verify_strict_s() {
        let key = ReplicaKey::from_seed(&[5; 32]);
        let mut good = action();
        key.sign(&mut good);
        let mut tampered = good.clone();
        tampered.input = json!({"id": "other"});
        let unsigned = action();
        let with_signature = |bytes: [u8; 64]| {
            let mut a = good.clone();
            a.signature = Some(encode(&bytes));
            a
        };
        let sig: [u8; 64] = decode_fixed(good.signature.as_deref().unwrap()).unwrap();
        // s + ℓ: the same equation, refused by verify_strict as malleable.
        let mut big_s = sig;
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
        ]);
        l[31] = 0x10;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(big_s[32 + i]) + u16::from(l[i]) + carry;
            big_s[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        let malleated = with_signature(big_s);
        // R the identity's encoding: of small order.
        let mut small_r = sig;
        small_r[..32].copy_from_slice(&{
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        });
        let small = with_signature(small_r);

        let actions = [&good, &tampered, &unsigned, &malleated, &small];
        let strict: Vec<_> = actions.iter().map(|a| verify(a)).collect();
        assert_eq!(strict[0], Ok(true));
        assert_eq!(strict[3], Err(SignatureError::Invalid));
        assert_eq!(strict[4], Err(SignatureError::Invalid));
        // Honest verdicts and no verdicts: verify's answers.
        let honest: Vec<Option<bool>> = strict.iter().map(|r| Some(matches!(r, Ok(true)))).collect();
        assert_eq!(verify_all_with(&actions, &honest), strict);
        assert_eq!(verify_all_with(&actions, &[]), strict);
        // A host wrong about the edge cases changes nothing: those are verified here.
        let edge_wrong = [Some(true), Some(false), None, Some(true), Some(true)];
        assert_eq!(verify_all_with(&actions, &edge_wrong), strict);
        // Where the verdict stands, it is the host's (the host is the caller's own WebCrypto).
        assert_eq!(
            verify_all_with(&[&good, &tampered], &[Some(false), Some(true)]),
            vec![Err(SignatureError::Invalid), Ok(true)]
        );
        // The parts a host verifies.
        let check = host_check(&good).unwrap();
        assert_eq!(check.message, signing_bytes(&good));
        assert_eq!(check.signature, sig);
        assert_eq!(host_check(&unsigned), None);
    }

    thread_local! {
        /// Signature equations `Keys` checked (or took from a host) on this thread.
        pub(super) static CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn numbered(n: usize) -> Vec<Action> {
        (0..n)
            .map(|i| {
                let mut a = action();
                a.input = json!({"id": format!("item-{i}"), "title": "t"});
                a
            })
            .collect()
    }

    #[test]
    fn a_batch_signature_verifies_each_action_alone_and_a_change_breaks_only_that_action() {
        let key = ReplicaKey::from_seed(&[9; 32]);
        for n in [2usize, 3, 5, 7, 31, 32, 33, 70] {
            let mut actions = numbered(n);
            key.sign_all(actions.iter_mut());
            for (i, a) in actions.iter().enumerate() {
                assert_eq!(verify(a), Ok(true), "{n} actions, action {i}");
                assert_eq!(a.replica.as_deref(), Some(key.replica_id()));
                let bytes = URL_SAFE_NO_PAD.decode(a.signature.as_deref().unwrap()).unwrap();
                let group = i / BATCH_LEAVES;
                let leaves = (n - group * BATCH_LEAVES).min(BATCH_LEAVES);
                if leaves == 1 {
                    assert_eq!(bytes.len(), 64, "a lone action is signed alone");
                    continue;
                }
                let at = i % BATCH_LEAVES;
                assert_eq!(u16::from_le_bytes([bytes[64], bytes[65]]) as usize, leaves);
                assert_eq!(u16::from_le_bytes([bytes[66], bytes[67]]) as usize, at);
                assert_eq!(bytes.len(), 68 + 32 * path_len(at, leaves));
                assert!(path_len(at, leaves) <= 5);
            }
            // One action's content changed: it fails, the others of its batch still verify.
            let victim = n / 2;
            let mut changed = actions.clone();
            changed[victim].input = json!({"id": "other"});
            for (i, a) in changed.iter().enumerate() {
                let expected = if i == victim {
                    Err(SignatureError::Invalid)
                } else {
                    Ok(true)
                };
                assert_eq!(verify(a), expected, "{n} actions, action {i}");
            }
            let refs: Vec<&Action> = changed.iter().collect();
            let one_by_one: Vec<_> = refs.iter().map(|a| verify(a)).collect();
            assert_eq!(verify_all(&refs), one_by_one);
            assert_eq!(verify_all_with(&refs, &[]), one_by_one);
        }
    }

    #[test]
    fn a_batch_proof_that_is_changed_cut_or_moved_is_refused() {
        let key = ReplicaKey::from_seed(&[10; 32]);
        let mut actions = numbered(5);
        key.sign_all(actions.iter_mut());
        let bytes = |a: &Action| URL_SAFE_NO_PAD.decode(a.signature.as_deref().unwrap()).unwrap();
        let with = |a: &Action, b: &[u8]| {
            let mut a = a.clone();
            a.signature = Some(encode(b));
            a
        };
        let a1 = &actions[1];
        let good = bytes(a1);
        // A flipped bit in a sibling hash, in the index, in the leaf count.
        for at in [70, 100, 66, 64] {
            let mut b = good.clone();
            b[at] ^= 1;
            assert!(
                matches!(
                    verify(&with(a1, &b)),
                    Err(SignatureError::Invalid | SignatureError::Malformed(_))
                ),
                "byte {at}"
            );
        }
        let mut b = good.clone();
        b[70] ^= 1;
        assert_eq!(verify(&with(a1, &b)), Err(SignatureError::Invalid));
        // Cut: a hash missing, the proof's header cut, the signature alone (the batch's signature over one action's
        // bytes: the domains differ).
        assert!(matches!(
            verify(&with(a1, &good[..good.len() - 32])),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify(&with(a1, &good[..66])),
            Err(SignatureError::Malformed(_))
        ));
        assert_eq!(verify(&with(a1, &good[..64])), Err(SignatureError::Invalid));
        // An extra hash, an index past the count, a count of one.
        let mut long = good.clone();
        long.extend_from_slice(&[0; 32]);
        assert!(matches!(verify(&with(a1, &long)), Err(SignatureError::Malformed(_))));
        let mut past = good.clone();
        past[66..68].copy_from_slice(&5u16.to_le_bytes());
        assert!(matches!(verify(&with(a1, &past)), Err(SignatureError::Malformed(_))));
        let mut one = good.clone();
        one[64..66].copy_from_slice(&1u16.to_le_bytes());
        assert!(matches!(verify(&with(a1, &one)), Err(SignatureError::Malformed(_))));
        // Another action's proof (and place) on this action.
        assert_eq!(verify(&with(a1, &bytes(&actions[2]))), Err(SignatureError::Invalid));
        // A huge field is refused before decoding.
        let mut huge = actions[0].clone();
        huge.signature = Some("A".repeat(100_000));
        assert!(matches!(verify(&huge), Err(SignatureError::Malformed(_))));
        // Another key's batch: its own actions verify, not with this replica's signer.
        let thief = ReplicaKey::from_seed(&[11; 32]);
        let mut stolen = numbered(5);
        thief.sign_all(stolen.iter_mut());
        let mut forged = stolen[1].clone();
        forged.signer = actions[1].signer.clone();
        forged.replica = actions[1].replica.clone();
        assert_eq!(verify(&forged), Err(SignatureError::Invalid));
    }

    #[test]
    fn many_actions_signed_in_batches_cost_one_check_a_batch() {
        let key = ReplicaKey::from_seed(&[12; 32]);
        let mut actions = numbered(5_000);
        key.sign_all(actions.iter_mut());
        let refs: Vec<&Action> = actions.iter().collect();
        CHECKS.with(|c| c.set(0));
        let answers = verify_all_with(&refs, &[]);
        assert!(answers.iter().all(|a| *a == Ok(true)));
        assert_eq!(CHECKS.with(|c| c.get()), 5_000usize.div_ceil(BATCH_LEAVES));
        // A host's verdicts: one message per batch, and a refusal of it refuses every action of the batch.
        let checks: Vec<HostCheck> = refs.iter().map(|a| host_check(a).unwrap()).collect();
        let distinct: std::collections::HashSet<&[u8]> = checks.iter().map(|c| c.message.as_slice()).collect();
        assert_eq!(distinct.len(), 5_000usize.div_ceil(BATCH_LEAVES));
        // (A host verifies each distinct message once and gives its verdict to every action that carries it.)
        let mut verdicts = vec![Some(true); refs.len()];
        verdicts[32..64].fill(Some(false));
        let answers = verify_all_with(&refs, &verdicts);
        for (i, a) in answers.iter().enumerate() {
            let expected = if (32..64).contains(&i) {
                Err(SignatureError::Invalid)
            } else {
                Ok(true)
            };
            assert_eq!(*a, expected, "action {i}");
        }
    }

    #[test]
    fn host_checks_read_each_action_once_and_answer_what_verify_answers() {
        let keys = [ReplicaKey::from_seed(&[13; 32]), ReplicaKey::from_seed(&[14; 32])];
        let mut actions = numbered(300);
        keys[0].sign_all(actions[..100].iter_mut());
        for a in &mut actions[100..150] {
            keys[1].sign(a);
        }
        keys[1].sign_all(actions[150..250].iter_mut());
        // Changed after signing: one in a batch, one signed alone; a stolen replica id; 250.. unsigned.
        actions[40].input = json!({"id": "changed"});
        actions[120].input = json!({"id": "changed"});
        actions[200].replica = Some(keys[0].replica_id().to_owned());
        let refs: Vec<&Action> = actions.iter().collect();
        let expected: Vec<_> = refs.iter().map(|a| verify(a)).collect();
        let host = HostChecks::new(&refs);
        // 100 in 4 batches (the changed one has a leaf of its own, so a root of its own: 5 checks), 50 alone, 100 in
        // 4 batches; the stolen one has no check.
        assert_eq!(host.checks().len(), 5 + 50 + 4);
        let covered: usize = host.checks().iter().map(|(_, of)| of.len()).sum();
        assert_eq!(covered, 249);
        // No verdicts: verified here. True verdicts where they are true, false where false: the same answers.
        assert_eq!(host.answers(&[]), expected);
        let honest: Vec<Option<bool>> = host
            .checks()
            .iter()
            .map(|(c, of)| Some(verify(refs[of[0] as usize]).is_ok() && !c.message.is_empty()))
            .collect();
        assert_eq!(host.answers(&honest), expected);
        assert_eq!(host.answers(&honest), verify_all_with(&refs, &[]));
    }

    #[test]
    fn a_replica_id_is_the_first_8_bytes_of_blake3_of_the_key_in_lowercase_hex() {
        for seed in 0..50u8 {
            let key = ReplicaKey::from_seed(&[seed; 32]);
            let public = key.signing.verifying_key().to_bytes();
            let expected: String = blake3::hash(&public).as_bytes()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(replica_id_of(&public), expected);
            assert_eq!(key.replica_id(), expected);
        }
    }
}
