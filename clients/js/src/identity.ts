/**
 * The replica's identity: an Ed25519 key pair made by WebCrypto with a non-extractable private key, kept in the
 * replica's IndexedDB database (a `CryptoKey` is structured-cloneable, so the database holds it without ever
 * exposing its bytes). The replica id is the id its public key derives (folio-core's `replica_id_of`, through the
 * WebAssembly core, so it is computed in one place), and the replica signs its own actions when they leave: the
 * core gives the bytes to sign (`signingBytes`), WebCrypto signs them, the core puts the signature in the entry
 * (`signedEntry`, which checks it). An operation's hash does not cover the signature, so the outbox keeps its
 * entries as they were committed and signs them at each push (Ed25519 signatures are deterministic: the same
 * entry is signed the same way each time).
 *
 * Where WebCrypto has no Ed25519 (older browsers), `open` answers null and the replica stays unsigned; a server
 * that requires signatures then refuses its pushes with `SIGNATURE_REQUIRED`.
 */
import { FolioError } from "./errors.js";
import { finished, request } from "./idb.js";
import { base64url, replicaIdOf, signedEntry, signingBytes } from "./wasm.js";

/** The meta row that holds the key pair (`{k, keys}`). */
const META_IDENTITY = "identity/ed25519";
const ED25519 = { name: "Ed25519" } as const;

export class Identity {
  private constructor(
    private readonly keys: CryptoKeyPair,
    /** The public key, unpadded base64url (an action's `signer`). */
    readonly publicKey: string,
    /** The replica id the public key derives. */
    readonly replicaId: string,
  ) {}

  /** The key pair kept in `db` (made and kept on first use; two tabs opening at once keep the first one's). */
  static async open(db: IDBDatabase): Promise<Identity | null> {
    const subtle = globalThis.crypto?.subtle;
    if (!subtle) return null;
    let keys = await read(db);
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

  /** The entry texts (`SyncEntry` JSON of this replica's actions) with their signatures. */
  async sign(entries: string[]): Promise<string[]> {
    return Promise.all(
      entries.map(async (entry) => {
        // A copy on a plain ArrayBuffer (what WebCrypto takes).
        const message = new Uint8Array(signingBytes(entry));
        if (message.length === 0) throw new FolioError("INVALID_REQUEST", "an outbox entry does not parse");
        const signature = new Uint8Array(await crypto.subtle.sign(ED25519, this.keys.privateKey, message));
        const answer = JSON.parse(signedEntry(entry, this.publicKey, base64url(signature))) as
          | string
          | { error: { code: string; message: string } };
        if (typeof answer !== "string") throw new FolioError(answer.error.code, answer.error.message);
        return answer;
      }),
    );
  }
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
