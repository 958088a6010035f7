/**
 * The replica's identity: an Ed25519 key pair made by WebCrypto with a non-extractable private key, kept in the
 * replica's IndexedDB database (a `CryptoKey` is structured-cloneable, so the database holds it without ever
 * exposing its bytes). The replica id is the id its public key derives (folio-core's `replica_id_of`, through the
 * WebAssembly core, so it is computed in one place), and the replica signs its own actions soon after it makes
 * them (in the background, a few changes at a time: `Folio.signOutbox`): the
 * core gives the messages to sign (`signingBatch`: one for each group of up to 32 actions, a batch signature),
 * WebCrypto signs them, the core puts each signature and each action's place in its group in the entries
 * (`signedEntries`, which checks their form: the key derives the replica id), and the outbox rows are stored signed
 * (`s`), so a push sends them as they are (rows stored unsigned, by an earlier version, are signed when they leave).
 * The first signature of each `Identity` is verified here with WebCrypto, once: verifying every own signature
 * again in WebAssembly cost ~0.3 ms an action, and every receiver verifies them in full anyway. An operation's
 * hash does not cover the signature, so the operation the core committed is the same signed or not.
 * `verifyChecks` verifies what a pull brings with WebCrypto for the core (`prepare`, then `integratePrepared`).
 *
 * Where WebCrypto has no Ed25519 (older browsers), `open` answers null and the replica stays unsigned; a server
 * that requires signatures then refuses its pushes with `SIGNATURE_REQUIRED`.
 */
import { FolioError } from "./errors.js";
import { finished, request } from "./idb.js";
import { base64url, replicaIdOf, signatureChecks, signedEntries, signingBatch } from "./wasm.js";

/** The meta row that holds the key pair (`{k, keys}`). */
export const META_IDENTITY = "identity/ed25519";
const ED25519 = { name: "Ed25519" } as const;

export class Identity {
  /** Whether a signature of this key pair has been verified (the first one made). */
  private checked = false;

  private constructor(
    private readonly keys: CryptoKeyPair,
    /** The public key, unpadded base64url (an action's `signer`). */
    readonly publicKey: string,
    /** The replica id the public key derives. */
    readonly replicaId: string,
  ) {}

  /** The key pair kept in `db` (made and kept on first use; two tabs opening at once keep the first one's).
   * `stored`: its meta row as the replica's opening read it (then it is not read again). */
  static async open(db: IDBDatabase, stored?: unknown): Promise<Identity | null> {
    const subtle = globalThis.crypto?.subtle;
    if (!subtle) return null;
    let keys = (stored as { keys?: CryptoKeyPair } | undefined)?.keys ?? (await read(db));
    if (!keys) {
      let fresh: CryptoKeyPair;
      try {
        fresh = (await subtle.generateKey(ED25519, false, ["sign", "verify"])) as CryptoKeyPair;
      } catch {
        return null;
      }
      keys = await keepFirst(db, fresh);
    }
    const raw = new Uint8Array(await subtle.exportKey("raw", keys.publicKey));
    return new Identity(keys, base64url(raw), replicaIdOf(raw));
  }

  /** The entry texts (`SyncEntry` JSON of this replica's actions) with their signatures: a batch signature for
   * each group of up to 32 (folio-core's `batch_plan`: one WebCrypto signature over the root of the group's tree,
   * each action carrying its place in it), so signing and every receiver's verification cost one Ed25519
   * operation a group, not one an action. */
  async sign(entries: string[]): Promise<string[]> {
    if (entries.length === 0) return [];
    const list = `[${entries.join(",")}]`;
    // wasm-bindgen's copy out of the module's memory: a plain ArrayBuffer.
    const plan = signingBatch(list) as Uint8Array<ArrayBuffer>;
    if (plan.length === 0) throw new FolioError("INVALID_REQUEST", "an outbox entry does not parse");
    const view = new DataView(plan.buffer, plan.byteOffset, plan.byteLength);
    const messages: Uint8Array<ArrayBuffer>[] = [];
    for (let at = 0; at + 8 <= plan.length; ) {
      const length = view.getUint32(at + 4, true);
      messages.push(plan.subarray(at + 8, at + 8 + length));
      at += 8 + length;
    }
    const signatures = new Uint8Array(64 * messages.length);
    await Promise.all(
      messages.map(async (message, k) => {
        signatures.set(new Uint8Array(await crypto.subtle.sign(ED25519, this.keys.privateKey, message)), 64 * k);
      }),
    );
    if (!this.checked) {
      const first = messages[0] as Uint8Array<ArrayBuffer>;
      if (!(await crypto.subtle.verify(ED25519, this.keys.publicKey, signatures.slice(0, 64), first))) {
        throw new FolioError("BAD_SIGNATURE", "this replica's key pair made a signature its public key refuses");
      }
      this.checked = true;
    }
    const answer = signedEntries(list, this.publicKey, signatures);
    if (answer.startsWith('{"error"')) {
      const failure = (JSON.parse(answer) as { error: { code: string; message: string } }).error;
      throw new FolioError(failure.code, failure.message);
    }
    const signed = answer.split("\n");
    if (signed.length !== entries.length) throw new FolioError("INTERNAL", "the core signed another number of entries");
    return signed;
  }
}

/** Public keys imported for verifying, by their base64url text (cleared past `KEYS_KEPT`). */
const verifyingKeys = new Map<string, Promise<CryptoKey | null>>();
const KEYS_KEPT = 1024;
/** Verifications in flight at once (more only queue up on WebCrypto's thread). */
const IN_FLIGHT = 4;
/** From this many distinct signatures a pull's checks are split with a worker (`helper`); below, one thread verifies
 * them all (a batch signature is one check for up to 32 entries). */
const SPLIT_FROM = 256;

/** One distinct signature to verify: its position in the core's list of checks, the entries it decides (their
 * indexes in the text; an action signed alone, or the actions of one batch signature), signer key, signature and
 * signed bytes. */
interface Check {
  at: number;
  indexes: Uint32Array;
  key: Uint8Array<ArrayBuffer>;
  signature: Uint8Array<ArrayBuffer>;
  message: Uint8Array<ArrayBuffer>;
}

/** The checks of the core's `prepare` or `signatureChecks` answer. */
function readChecks(parts: Uint8Array<ArrayBuffer>): Check[] {
  const view = new DataView(parts.buffer, parts.byteOffset, parts.byteLength);
  const items: Check[] = [];
  for (let at = 0; at + 4 <= parts.length; ) {
    const count = view.getUint32(at, true);
    const indexes = new Uint32Array(count);
    for (let k = 0; k < count; k++) indexes[k] = view.getUint32(at + 4 + 4 * k, true);
    at += 4 + 4 * count;
    const length = view.getUint32(at + 96, true);
    items.push({
      at: items.length,
      indexes,
      key: parts.subarray(at, at + 32),
      signature: parts.subarray(at + 32, at + 96),
      message: parts.subarray(at + 100, at + 100 + length),
    });
    at += 100 + length;
  }
  return items;
}

/**
 * The host's verdicts on the signatures the core listed (its `prepare` answer: each distinct check once): one byte
 * per check, 0 not checked, 1 valid, 2 invalid, for `integratePrepared`. WebCrypto's Ed25519 verifies at ~90 µs a
 * signature in Chromium where the core's own (WebAssembly) takes ~300; the core takes a verdict only where it must
 * equal its own answer and verifies the rest itself. `null` when there is nothing to check or WebCrypto has no
 * Ed25519 (the core then verifies everything). Actions signed in batches share a check: 5,000 of them signed 32
 * at a time are 157 checks.
 *
 * Chromium runs one context's verifications one at a time (5,000 took 370–640 ms in a page whatever the number in
 * flight; two workers with 2,000 each ~325 ms): `SPLIT_FROM` checks or more are split in two, the second half
 * verified by a worker of this context's own (`helper`) while this thread verifies the first. Where no worker can
 * be made (Chromium's SharedWorker has no `Worker`; a policy refusing `blob:` workers), or it fails, this thread
 * verifies everything: the split helps a replica hosted by a page (a leader tab where SharedWorker is missing, or
 * `shared: "off"`). A tab could lend the SharedWorker such a helper through a MessagePort: not done.
 */
export async function verifyChecks(parts: Uint8Array<ArrayBuffer>): Promise<Uint8Array | null> {
  return parts.length === 0 ? null : verifyItems(readChecks(parts));
}

/** `verifyChecks` of checks already read. */
async function verifyItems(items: Check[]): Promise<Uint8Array | null> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle || items.length === 0) return null;
  const verdicts = new Uint8Array(items.length);
  const worker = items.length >= SPLIT_FROM ? await helper() : null;
  if (!worker) {
    await verifyHere(subtle, items, verdicts);
    return verdicts;
  }
  const half = items.length >> 1;
  const theirs = items.slice(half);
  const [, answered] = await Promise.all([verifyHere(subtle, items.slice(0, half), verdicts), worker.verify(theirs)]);
  if (answered && answered.length === theirs.length) {
    theirs.forEach((item, i) => (verdicts[item.at] = answered[i] ?? 0));
  } else {
    await verifyHere(subtle, theirs, verdicts);
  }
  return verdicts;
}

/** The host's verdicts on the signed entries of `text` (a pull answer or an entry list): one byte per entry, as
 * `verifyChecks` gives them per check (for tests and tools; a replica uses the core's `prepare`). */
export async function verifySignatures(text: string): Promise<Uint8Array | null> {
  // wasm-bindgen's copy out of the module's memory: a plain ArrayBuffer.
  const items = readChecks(signatureChecks(text) as Uint8Array<ArrayBuffer>);
  const perCheck = await verifyItems(items);
  if (!perCheck) return null;
  let last = -1;
  for (const item of items) for (const i of item.indexes) last = Math.max(last, i);
  const verdicts = new Uint8Array(last + 1);
  for (const item of items) for (const i of item.indexes) verdicts[i] = perCheck[item.at] ?? 0;
  return verdicts;
}

/** Verifies `items` on this thread, writing each verdict at its check's position (left 0 where WebCrypto cannot). */
async function verifyHere(subtle: SubtleCrypto, items: Check[], verdicts: Uint8Array): Promise<void> {
  const keyOf = (raw: Uint8Array<ArrayBuffer>): Promise<CryptoKey | null> => {
    const text = base64url(raw);
    let key = verifyingKeys.get(text);
    if (!key) {
      if (verifyingKeys.size >= KEYS_KEPT) verifyingKeys.clear();
      key = subtle.importKey("raw", raw.slice(), ED25519, false, ["verify"]).catch(() => null);
      verifyingKeys.set(text, key);
    }
    return key;
  };
  for (let from = 0; from < items.length; from += IN_FLIGHT) {
    await Promise.all(
      items.slice(from, from + IN_FLIGHT).map(async (item) => {
        const key = await keyOf(item.key);
        if (!key) return; // not importable: the core verifies this one
        try {
          verdicts[item.at] = (await subtle.verify(ED25519, key, item.signature, item.message)) ? 1 : 2;
        } catch {
          // left at 0: the core verifies it
        }
      }),
    );
  }
}

/** What the helper worker runs: verdicts (0, 1, 2 as above) for the entries it is sent, in their order. */
const HELPER_SOURCE = `"use strict";
const keys = new Map();
const ED = { name: "Ed25519" };
onmessage = async (event) => {
  const { id, items } = event.data;
  const verdicts = new Uint8Array(items.length);
  for (let from = 0; from < items.length; from += ${IN_FLIGHT}) {
    await Promise.all(items.slice(from, from + ${IN_FLIGHT}).map(async (item, i) => {
      let name = "";
      for (const byte of item.key) name += String.fromCharCode(byte);
      let key = keys.get(name);
      if (!key) {
        if (keys.size >= ${KEYS_KEPT}) keys.clear();
        key = crypto.subtle.importKey("raw", item.key, ED, false, ["verify"]).catch(() => null);
        keys.set(name, key);
      }
      const imported = await key;
      if (!imported) return;
      try {
        verdicts[from + i] = (await crypto.subtle.verify(ED, imported, item.signature, item.message)) ? 1 : 2;
      } catch {}
    }));
  }
  postMessage({ id, verdicts }, [verdicts.buffer]);
};
`;

/** The helper worker of this context, made on first use: `verify` answers its verdicts, or null when it failed. */
interface Helper {
  verify(items: Check[]): Promise<Uint8Array | null>;
}

let helperMade: Helper | null | undefined;

/** This context's helper worker, or null where none can be made. */
async function helper(): Promise<Helper | null> {
  if (helperMade !== undefined) return helperMade;
  helperMade = null;
  const Make = (globalThis as { Worker?: typeof Worker }).Worker;
  if (typeof Make !== "function" || typeof Blob !== "function" || typeof URL.createObjectURL !== "function") return null;
  let worker: Worker;
  try {
    worker = new Make(URL.createObjectURL(new Blob([HELPER_SOURCE], { type: "text/javascript" })));
  } catch {
    return null;
  }
  const waiting = new Map<number, (verdicts: Uint8Array | null) => void>();
  let next = 0;
  const fail = () => {
    // A worker that cannot load or fails is not asked again: every batch is verified on its own thread.
    helperMade = null;
    for (const answer of waiting.values()) answer(null);
    waiting.clear();
    worker.terminate();
  };
  worker.onerror = fail;
  worker.onmessageerror = fail;
  worker.onmessage = (event: MessageEvent<{ id: number; verdicts: Uint8Array }>) => {
    const answer = waiting.get(event.data.id);
    waiting.delete(event.data.id);
    answer?.(event.data.verdicts);
  };
  helperMade = {
    verify(items: Check[]): Promise<Uint8Array | null> {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        try {
          worker.postMessage({ id, items: items.map(({ key, signature, message }) => ({ key, signature, message })) });
        } catch {
          waiting.delete(id);
          resolve(null);
        }
      });
    },
  };
  return helperMade;
}

async function read(db: IDBDatabase): Promise<CryptoKeyPair | undefined> {
  const tx = db.transaction(["meta"], "readonly");
  const row = (await request(tx.objectStore("meta").get(META_IDENTITY))) as { keys?: CryptoKeyPair } | undefined;
  return row?.keys;
}

/** Stores `fresh` unless a key pair is there already, in one transaction; answers the one kept. */
async function keepFirst(db: IDBDatabase, fresh: CryptoKeyPair): Promise<CryptoKeyPair> {
  const tx = db.transaction(["meta"], "readwrite", { durability: "strict" });
  const done = finished(tx);
  const meta = tx.objectStore("meta");
  const row = (await request(meta.get(META_IDENTITY))) as { keys?: CryptoKeyPair } | undefined;
  const kept = row?.keys ?? fresh;
  if (!row?.keys) meta.put({ k: META_IDENTITY, keys: fresh });
  await done;
  return kept;
}
