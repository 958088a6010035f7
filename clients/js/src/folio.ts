/**
 * `Folio`: a replica of folio documents in the browser (contract: `docs/spec/js-client.md`).
 *
 * The replica core (folio-core compiled to WebAssembly) folds, stamps, merges and compresses; this class keeps its
 * logs in IndexedDB ({@link ReplicaStore}) and moves actions with `folio serve` ({@link HttpRemote}), following
 * folio-sync's rounds: compress the unsent outbox, push it in pages (the sent clock is stored before a page leaves,
 * the acknowledged rows are deleted after the server answered) and, at the same time, pull after the cursor,
 * integrating each page and moving the cursor in the transaction that stores what it covers.
 *
 * Local changes and integrations go through one queue (the core and the database change together); the network is
 * never awaited inside it, so `apply` never waits for a sync.
 */
import { FolioError, storageError } from "./errors.js";
import { HttpRemote, type FetchLike } from "./remote.js";
import { Identity, META_IDENTITY, verifyChecks } from "./identity.js";
import { type Commit, type DocRecord, type OpRecord, type OutboxRecord, ReplicaStore, docKey, unitKey } from "./store.js";
import type {
  ActionInput,
  Conflict,
  DocumentHeader,
  FolioDocument,
  Operation,
  RejectedAction,
  Status,
  SyncReport,
} from "./types.js";
import { ReplicaCore, isFailure, loadWasm, wasmConflicts, type WasmSource } from "./wasm.js";

export interface OpenOptions {
  /** A `folio serve` (`http://127.0.0.1:4780`); omit to work local-only. */
  url?: string;
  /** A write token (read tokens can pull only). */
  token?: string;
  /** The local replica's name: one IndexedDB database per name and origin. */
  name?: string;
  /** Sync by itself while online (a round at open and after local changes, then live). Default: true with a `url`. */
  autoSync?: boolean;
  /** Follow the server live over WebSocket after a round. Default: true where `WebSocket` exists. */
  live?: boolean;
  /** Compress own unsent actions before pushing them (as `folio sync` does). Default: true. */
  compress?: boolean;
  /** Entries per push request at most (also bounded by the server's `maxBodyBytes`). Default 10000: each request
   * costs a round trip and the server one integration of the unit. */
  pushEntries?: number;
  /** Entries per pull request. Default 10000 (the most `folio serve` answers with): each page costs a round trip
   * and an integration that reads the document's whole log in the core. */
  pullEntries?: number;
  /** The `.wasm` (default: `folio-client.wasm` beside this module). */
  wasm?: WasmSource;
  /** IndexedDB (default: `globalThis.indexedDB`; tests pass fake-indexeddb's). */
  indexedDB?: IDBFactory;
  /** fetch (default: `globalThis.fetch`). */
  fetch?: FetchLike;
  /** WebSocket constructor (default: `globalThis.WebSocket`). */
  WebSocket?: typeof WebSocket;
}

/**
 * For the tabs' host (`host.ts`): a call identified by `callId` stores its answer in the transaction that makes its
 * change, so the same call made again (`retry`, after the tab hosting the replica died before answering) answers
 * from there instead of changing the document twice. Answers older than an hour are dropped at open.
 */
export interface CallOptions {
  callId?: string;
  retry?: boolean;
}

const callKey = (callId: string) => `call/${callId}`;

/** What `apply` resolves to once the operations are durable in IndexedDB. */
export interface ApplyResult {
  revision: number;
  operations: Operation[];
}

type Listener<T> = (value: T) => void;

/** An operation of the core's `apply`/`create`/`integrate`/`compress` answers, with its texts. */
interface OpOut {
  index: number;
  /** Its wire text. */
  json: string;
  /** Own actions only (apply, create, compress): the entry text pushed, and what the outbox keeps. */
  entry?: string;
  id?: string;
  millis?: number;
  counter?: number;
}

/** Operations the core appended to one unit. In the core's answer `operations` lists own actions only, without
 * texts: the texts follow the answer's JSON (see `withTexts`), and `withTexts` fills `operations` in. */
interface AppendedOut {
  documentId: string;
  branch: string;
  scope: "global" | "local" | "document";
  first: number;
  count: number;
  operations: OpOut[];
  /** Integrated units (no own actions): their operation texts as the core wrote them, one per line. */
  block?: string;
  keyframe: string | null;
  keyframeRevision: number | null;
}

/** What `integrate` answers (`entries`, `cursor`, `more`: of the pull answer it was given). */
interface IntegrateOut {
  appended?: AppendedOut[];
  new?: number;
  rejected?: RejectedAction[];
  need?: Need[];
  entries?: number;
  cursor?: number;
  more?: boolean;
}

interface Need {
  documentId: string;
  before: number;
}

const BRANCH = "main";
const META_REPLICA = "replica";
const META_REMOTE = "sync/remote";
const META_SENT = "sync/sent-clock";
const cursorKey = (remote: string) => `sync/remote/${remote}/pulled`;

function randomHex(bytes: number): string {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function parseClock(text: string | undefined): [number, number] {
  if (!text) return [0, 0];
  const [ms, c] = text.split(".");
  return [Number(ms) || 0, Number(c) || 0];
}

/** A retry delay spread over [d/2, 3d/2): replicas that lost the server together do not come back together. */
function jitter(d: number): number {
  return Math.round(d * (0.5 + Math.random()));
}

function after(a: [number, number], b: [number, number]): boolean {
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]);
}

/** How long the signing of changes waits for more changes to sign together (`signOutbox`). */
const SIGN_AFTER_MS = 250;

export class Folio {
  private core: ReplicaCore;
  private readonly seed: [number, number];
  private queue: Promise<unknown> = Promise.resolve();
  private rounds: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Map<string, Set<Listener<FolioDocument>>>();
  private readonly textListeners = new Map<string, Set<Listener<string>>>();
  private readonly statusListeners = new Set<Listener<Status>>();
  private readonly remote: HttpRemote | null;
  private closed = false;
  private stopped = false;
  private socket: WebSocket | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private backoff = 500;
  private liveBackoff = 500;
  private syncRequested = false;
  private roundRunning = false;
  private current: Status = { online: false, pending: 0, lastSyncAt: null, conflicts: 0, error: null };
  /** Signs own actions as they leave (null: an unsigned replica, see identity.ts). */
  private identity: Identity | null = null;
  /** Stored outbox rows waiting to be signed (`signOutbox`), the timer that signs them, the signing under way. */
  private unsigned: OutboxRecord[] = [];
  private signTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private signing: Promise<void> = Promise.resolve();
  /** Documents whose stored header `apply` marked `lag` in this session, with that header's fields other than the
   * revision and modification time (`docRecord`). */
  private readonly headerLag = new Map<string, string>();
  /** Subscribers are told in a task after the change (`deferNotifications`), and the documents changed since. */
  private notifyLater = false;
  private dirty: Set<string> | null = null;

  private constructor(
    private readonly store: ReplicaStore,
    readonly replicaId: string,
    private readonly options: OpenOptions,
  ) {
    const seed = new Uint32Array(2);
    crypto.getRandomValues(seed);
    this.seed = [seed[0] ?? 0, seed[1] ?? 1];
    this.core = new ReplicaCore(replicaId, this.seed[0], this.seed[1]);
    const fetchImpl = options.fetch ?? ((input: string, init?: RequestInit) => globalThis.fetch(input, init));
    this.remote = options.url ? new HttpRemote(options.url, options.token, fetchImpl) : null;
  }

  /** Opens (or makes) the replica `name` of this origin and, with a `url`, starts syncing. */
  static async open(options: OpenOptions = {}): Promise<Folio> {
    // The WebAssembly module loads while the database opens and is read (a new page or worker: both at once).
    const wasm = loadWasm(options.wasm);
    wasm.catch(() => undefined);
    const factory = options.indexedDB ?? globalThis.indexedDB;
    if (!factory) throw new FolioError("STORAGE_ERROR", "IndexedDB is not available here");
    const store = await ReplicaStore.open(factory, options.name ?? "default");
    // One read-only transaction (a replica opens in one round trip to the database; writes only when needed).
    const dropBefore = Date.now() - 3_600_000;
    let opened: Awaited<ReturnType<ReplicaStore["opening"]>>;
    try {
      opened = await store.opening([META_REPLICA, META_SENT], "call/", dropBefore, [META_IDENTITY]);
      await wasm;
    } catch (e) {
      store.close();
      throw e;
    }
    // The replica's key (identity.ts): a new replica takes the id it derives; one made before keys keeps its random
    // id (unsigned) until its outbox is empty, then moves to the derived id (nothing under the old one is unsent).
    const identity = await Identity.open(store.db, opened.rows[0]);
    let replica = opened.meta[0];
    if (!replica || (identity && replica !== identity.replicaId && opened.pending === 0)) {
      replica = identity?.replicaId ?? randomHex(8);
      await store.putMeta({ [META_REPLICA]: replica });
    }
    const folio = new Folio(store, replica, options);
    folio.identity = identity?.replicaId === replica ? identity : null;
    const [ms, c] = parseClock(opened.meta[1]);
    folio.core.observe(ms, c);
    folio.current.pending = opened.pending;
    if (opened.stale) await store.pruneMeta("call/", dropBefore).catch(() => undefined);
    if (folio.remote && (options.autoSync ?? true)) folio.requestSync();
    return folio;
  }

  /** Sync's state now. */
  get status(): Status {
    return { ...this.current };
  }

  /** `status`: called with the new status on every change. Returns the function that stops it. */
  on(event: "status", listener: Listener<Status>): () => void {
    if (event !== "status") throw new FolioError("INVALID_REQUEST", `no event ${String(event)}`);
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  private setStatus(change: Partial<Status>): void {
    this.current = { ...this.current, ...change };
    const s = this.status;
    for (const l of this.statusListeners) {
      try {
        l(s);
      } catch (e) {
        console.error("folio status listener failed", e);
      }
    }
  }

  /** Runs `fn` alone: the core and the database change together. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      if (this.closed) throw new FolioError("CLOSED", "the replica is closed");
      return fn();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Runs a core call. A trap (a panic: on wasm32 panics abort) leaves that core unusable: a new one takes its
   * place, documents load again from IndexedDB, and the call fails with `CORE_FAILED`. */
  private run<T>(f: (core: ReplicaCore) => T): T {
    try {
      return f(this.core);
    } catch (e) {
      if (e instanceof FolioError) throw e;
      this.seed[1] = (this.seed[1] + 1) >>> 0;
      this.core = new ReplicaCore(this.replicaId, this.seed[0], this.seed[1]);
      throw new FolioError("CORE_FAILED", `the WebAssembly core failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
  }

  private call<T>(text: string): T {
    const value = JSON.parse(text) as unknown;
    if (isFailure(value)) {
      const { code, message, actionIndex } = value.error;
      throw new FolioError(code, message, actionIndex === undefined ? {} : { actionIndex });
    }
    return value as T;
  }

  /** An answer of `apply`/`create`/`integrate`/`compress`: its JSON, then for each unit of `units(answer)` in order
   * its operation texts and, for own actions, their entry texts, one per line (folio-wasm's `with_texts`). The units
   * of own actions get their `operations` with texts; the others their texts as one block of lines (`block`). */
  private withTexts<T>(text: string, units: (value: T) => AppendedOut[] | undefined): T {
    const nl = text.indexOf("\n");
    const value = this.call<T>(nl < 0 ? text : text.slice(0, nl));
    const appended = units(value) ?? [];
    let pos = nl < 0 ? text.length + 1 : nl + 1;
    // The end of the `count` lines from `pos`.
    const skip = (count: number): number => {
      let end = pos - 1;
      for (let i = 0; i < count; i++) {
        if (end >= text.length) throw new FolioError("CORE_FAILED", "the core answered fewer texts than operations");
        const e = text.indexOf("\n", end + 1);
        end = e < 0 ? text.length : e;
      }
      return end;
    };
    for (const a of appended) {
      const own = a.operations ?? [];
      if (a.count === 0) {
        a.operations = [];
        continue;
      }
      if (own.length === 0) {
        const end = skip(a.count);
        a.block = text.slice(pos, end);
        a.operations = [];
        pos = end + 1;
        continue;
      }
      const ops: OpOut[] = new Array(a.count);
      for (const field of ["json", "entry"] as const) {
        for (let i = 0; i < a.count; i++) {
          const end = skip(1);
          const op = (ops[i] ??= own[i] ?? { index: a.first + i, json: "" });
          op[field] = text.slice(pos, end);
          pos = end + 1;
        }
      }
      a.operations = ops;
    }
    if (pos < text.length + 1) throw new FolioError("CORE_FAILED", "the core answered more texts than operations");
    return value;
  }

  /** Loads a document into the core from IndexedDB (from its latest keyframe, or from one at or below `before`). */
  private async ensureLoaded(id: string, before?: number): Promise<void> {
    if (before === undefined && this.core.isLoaded(id, BRANCH)) return;
    let bound = before;
    for (let attempt = 0; attempt < 64; attempt++) {
      const input = await this.store.loadInput(id, BRANCH, bound);
      let answer: { loaded?: boolean; need?: Need[] };
      try {
        answer = this.call(this.run((c) => c.load(input)));
      } catch (e) {
        const err = e as FolioError;
        if (err.code === "INVALID_REQUEST" || err.code === "CORRUPT_RECORD") {
          throw new FolioError("CORRUPT_RECORD", `document ${id} does not read back from IndexedDB: ${err.message}`);
        }
        throw e;
      }
      if (answer.loaded) return;
      const need = answer.need?.[0];
      if (!need) break;
      bound = need.before;
    }
    throw new FolioError("CORRUPT_RECORD", `document ${id}: no keyframe lets it load`);
  }

  /** The header record of a document as the core has it now; null when not created. */
  private headerRecord(id: string): DocRecord | null {
    const header = this.run((c) => c.header(id, BRANCH));
    if (header === "null") return null;
    const h = this.call<DocumentHeader>(header);
    return { k: docKey(id, BRANCH), id, branch: BRANCH, type: h.documentType, header, deleted: !!h.deleted };
  }

  /** The header record to store with a change (`[]` when not created). `lagging`: for an `apply`, which stores it
   * only when more than its revision and modification time changed since the last one it stored, marked `lag` (see
   * `docs` in store.ts), and `[]` when it need not be stored. */
  private docRecord(id: string, lagging = false): Commit["docs"] {
    const record = this.headerRecord(id);
    if (!record) return [];
    if (!lagging) {
      this.headerLag.delete(record.k);
      return [record];
    }
    const { revision: _revision, lastModifiedAtUtcIso: _modified, ...rest } = JSON.parse(record.header) as DocumentHeader;
    const same = JSON.stringify(rest);
    if (this.headerLag.get(record.k) === same) return [];
    this.headerLag.set(record.k, same);
    return [{ ...record, lag: true }];
  }

  /** Stores the headers `apply` left lagging (`docRecord`), as they are now. */
  private async storeHeaders(): Promise<void> {
    const docs: NonNullable<Commit["docs"]> = [];
    for (const k of [...this.headerLag.keys()]) {
      const id = k.slice(0, k.lastIndexOf("/"));
      if (!this.core.isLoaded(id, BRANCH)) continue;
      docs.push(...(this.docRecord(id) ?? []));
    }
    if (docs.length > 0) await this.store.commit({ docs });
  }

  /** Records for the operations of `appended`, their keyframes and, for own replicated ones, outbox rows. */
  private records(appended: AppendedOut[], outbox: boolean): Commit {
    const ops: OpRecord[] = [];
    const keyframes: NonNullable<Commit["keyframes"]> = [];
    const outboxAdd: OutboxRecord[] = [];
    for (const a of appended) {
      const u = unitKey(a.documentId, a.scope, a.branch);
      if (a.block !== undefined) ops.push({ u, i: a.first, n: a.count, t: a.block });
      for (const op of a.operations) {
        ops.push({ u, i: op.index, j: op.json });
        if (outbox && a.scope !== "local" && op.entry !== undefined) {
          outboxAdd.push({ doc: a.documentId, scope: a.scope, j: op.entry, id: op.id ?? "", ms: op.millis ?? 0, c: op.counter ?? 0 });
        }
      }
      if (a.keyframe && a.keyframeRevision !== null) keyframes.push({ u, rev: a.keyframeRevision, j: a.keyframe });
    }
    return { ops, keyframes, outboxAdd };
  }

  /** Signs the outbox rows of a change once it is stored (identity.ts), in the background, and stores them signed,
   * so a push sends them as they are: an action is signed once, soon after it is made, not at each push (WebCrypto's
   * ~0.1 ms a signature was most of a push's time in the page), and the change's own commit does not wait for
   * WebCrypto. A push waits for the signing under way; rows still unsigned are signed when they leave. */
  private signOutbox(commit: Commit): void {
    const records = commit.outboxAdd;
    if (!this.identity || !records || records.length === 0) return;
    this.unsigned.push(...records);
    // Changes made in a row are signed and stored together: one transaction, not one per change.
    this.signTimer ??= setTimeout(() => void this.signNow(), SIGN_AFTER_MS);
  }

  /** Signs the rows `signOutbox` collected and stores them signed; resolves when done (also when it fails: those
   * rows are signed at their push). */
  private signNow(): Promise<void> {
    if (this.signTimer) clearTimeout(this.signTimer);
    this.signTimer = undefined;
    const records = this.unsigned;
    this.unsigned = [];
    const identity = this.identity;
    if (!identity || records.length === 0) return this.signing;
    const texts = records.map((r) => r.j);
    this.signing = this.signing.then(async () => {
      try {
        const signed = await identity.sign(texts);
        const rows = new Map<number, { before: string[]; after: string[] }>();
        records.forEach((r, k) => {
          if (r.seq === undefined) return;
          const row = rows.get(r.seq) ?? { before: [], after: [] };
          row.before.push(texts[k] as string);
          row.after.push(signed[k] as string);
          rows.set(r.seq, row);
        });
        await this.store.signRows(rows);
      } catch {
        // Left unsigned: the push signs them (a closed database, or WebCrypto refusing, changes nothing stored).
      }
    });
    return this.signing;
  }

  /** Stores a change the core made to `ids`; when the browser refuses it, the core forgets them (they reload). */
  private async store_(commit: Commit, ids: string[]): Promise<void> {
    try {
      await this.store.commit(commit);
    } catch (e) {
      for (const id of ids) {
        this.core.unload(id, BRANCH);
        // The header this change would have marked `lag` is not stored: the next change stores it.
        this.headerLag.delete(docKey(id, BRANCH));
      }
      throw storageError(e, "storing operations");
    }
    this.signOutbox(commit);
  }

  /** A call made again (`retry`) whose first try was stored: its stored answer (the change is not made twice). */
  private async answered<T>(options: CallOptions): Promise<T | null> {
    if (!options.callId || !options.retry) return null;
    const done = await this.store.getMeta(callKey(options.callId));
    return done ? (JSON.parse(done.slice(done.indexOf("|") + 1)) as T) : null;
  }

  /** Creates a document (offline too): its header. */
  async create(
    documentType: string,
    name = "",
    options: { id?: string; initialState?: unknown } & CallOptions = {},
  ): Promise<DocumentHeader> {
    const header = await this.exclusive(async () => {
      const done = await this.answered<{ id: string; header: DocumentHeader }>(options);
      if (done) return done;
      if (options.id) await this.ensureLoaded(options.id);
      const initial = options.initialState === undefined ? "" : JSON.stringify(options.initialState);
      const appended = this.withTexts<AppendedOut>(this.run((c) => c.create(documentType, name, options.id ?? "", initial)), (a) => [a]);
      const id = appended.documentId;
      const commit = this.records([appended], true);
      commit.docs = this.docRecord(id);
      const out = { id, header: this.call<DocumentHeader>(this.run((c) => c.header(id, BRANCH))) };
      if (options.callId) commit.meta = { [callKey(options.callId)]: `${Date.now()}|${JSON.stringify(out)}` };
      await this.store_(commit, [id]);
      this.current.pending += commit.outboxAdd?.length ?? 0;
      return out;
    });
    this.changed([header.id]);
    this.setStatus({});
    this.requestSync();
    return header.header;
  }

  /** Applies actions (one scope) all or nothing; resolves once durable in IndexedDB. A refused action rejects with
   * the reducer's code, and nothing is stored. */
  async apply(id: string, actions: ActionInput[], options: CallOptions = {}): Promise<ApplyResult> {
    return JSON.parse(await this.applyText(id, actions, options)) as ApplyResult;
  }

  /** `apply`'s answer as JSON text, made of the operations' texts as the core wrote them: for the tabs' host, which
   * sends it to the tab as it is (no parse and structured clone of the operations in the host). */
  async applyText(id: string, actions: ActionInput[], options: CallOptions = {}): Promise<string> {
    const result = await this.exclusive(async () => {
      const done = await this.answered<ApplyResult>(options);
      if (done) return JSON.stringify(done);
      await this.ensureLoaded(id);
      const appended = this.withTexts<AppendedOut>(this.run((c) => c.apply(id, BRANCH, JSON.stringify(actions))), (a) => [a]);
      const commit = this.records([appended], true);
      // The header is stored when more than its revision and time changed (`docRecord`): one request less in the
      // transaction an apply waits for.
      commit.docs = this.docRecord(id, true);
      const last = appended.operations[appended.operations.length - 1];
      const out = `{"revision":${last ? last.index + 1 : 0},"operations":[${appended.operations.map((op) => op.json).join(",")}]}`;
      if (options.callId) commit.meta = { [callKey(options.callId)]: `${Date.now()}|${out}` };
      await this.store_(commit, [id]);
      this.current.pending += commit.outboxAdd?.length ?? 0;
      return out;
    });
    this.changed([id]);
    this.setStatus({});
    this.requestSync();
    return result;
  }

  /** The document (`{header, state, stateHash}`), or null when this replica does not know it. */
  async get<G = unknown, L = unknown>(id: string): Promise<FolioDocument<G, L> | null> {
    return JSON.parse(await this.getText(id)) as FolioDocument<G, L> | null;
  }

  /** `get`'s answer as JSON text (`"null"` when this replica does not know the document): for the tabs' host, which
   * sends it to a tab as it is (a structured clone of the parsed document costs several times its `JSON.parse`). */
  async getText(id: string): Promise<string> {
    return this.exclusive(async () => {
      await this.ensureLoaded(id);
      return this.documentText(id);
    });
  }

  /** The core's document text; a failure throws. */
  private documentText(id: string): string {
    const text = this.run((c) => c.document(id, BRANCH));
    if (text.startsWith('{"error"')) this.call(text);
    return text;
  }

  /** Calls `listener` with the document after every local or remote change. Returns the function that stops it. */
  subscribe<G = unknown, L = unknown>(id: string, listener: Listener<FolioDocument<G, L>>): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener as Listener<FolioDocument>);
    return () => set.delete(listener as Listener<FolioDocument>);
  }

  /** `subscribe` with the document's JSON text (see `getText`). */
  subscribeText(id: string, listener: Listener<string>): () => void {
    let set = this.textListeners.get(id);
    if (!set) {
      set = new Set();
      this.textListeners.set(id, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }

  /** The host of tabs (host.ts) sets this: subscribers hear of changes in a task after the change, so the answer
   * to the call that made it goes first (the document's text is made, and sent to every subscribed tab, after the
   * caller has its answer). Several changes before that task: one text per document, the latest. */
  deferNotifications(): void {
    this.notifyLater = true;
  }

  /** Tells the subscribers of `ids` (now, or in a task of its own: `deferNotifications`). */
  private changed(ids: string[]): void {
    if (!this.notifyLater) return this.notify(ids);
    if (!ids.some((id) => this.listeners.get(id)?.size || this.textListeners.get(id)?.size)) return;
    if (this.dirty) {
      for (const id of ids) this.dirty.add(id);
      return;
    }
    this.dirty = new Set(ids);
    setTimeout(() => {
      const dirty = [...(this.dirty ?? [])];
      this.dirty = null;
      this.notify(dirty.filter((id) => this.core.isLoaded(id, BRANCH)));
      // A document the core let go of since its change (a later call's trap replaced the core) is loaded again
      // from IndexedDB, where the change is, and then told.
      const unloaded = dirty.filter((id) => !this.core.isLoaded(id, BRANCH));
      if (unloaded.length === 0) return;
      this.exclusive(async () => {
        for (const id of unloaded) await this.ensureLoaded(id).catch(() => undefined);
      }).then(
        () => this.notify(unloaded),
        () => undefined,
      );
    }, 0);
  }

  private notify(ids: string[]): void {
    for (const id of new Set(ids)) {
      const set = this.listeners.get(id);
      const texts = this.textListeners.get(id);
      if (!set?.size && !texts?.size) continue;
      let text: string;
      try {
        text = this.documentText(id);
      } catch {
        continue;
      }
      if (text === "null") continue;
      const doc = set?.size ? (JSON.parse(text) as FolioDocument) : null;
      const calls: [Listener<never>, unknown][] = [
        ...[...(set ?? [])].map((l): [Listener<never>, unknown] => [l, doc]),
        ...[...(texts ?? [])].map((l): [Listener<never>, unknown] => [l, text]),
      ];
      for (const [l, v] of calls) {
        try {
          (l as Listener<unknown>)(v);
        } catch (e) {
          console.error("folio subscriber failed", e);
        }
      }
    }
  }

  /** The actions kept in the document's history but refused by their reducer in their merged position. */
  async conflicts(id: string): Promise<Conflict[]> {
    const out: Conflict[] = [];
    for (const scope of ["document", "global"] as const) {
      const log = await this.store.unitLog(id, scope, BRANCH);
      out.push(...this.call<Conflict[]>(wasmConflicts(log)));
    }
    return out;
  }

  /** Headers of the documents this replica has (deleted ones left out), optionally of one type. A stored header
   * marked `lag` (see `docRecord`) is taken from the core, which loads the document when it does not hold it. */
  async list(filter: { type?: string; includeDeleted?: boolean } = {}): Promise<DocumentHeader[]> {
    let docs = await this.store.docs();
    if (docs.some((d) => d.lag)) {
      docs = await this.exclusive(async () => {
        const out: DocRecord[] = [];
        const fresh: DocRecord[] = [];
        for (const d of docs) {
          if (!d.lag) {
            out.push(d);
            continue;
          }
          try {
            await this.ensureLoaded(d.id);
          } catch {
            out.push(d); // does not load (see `repair`): the header as stored
            continue;
          }
          const now = this.headerRecord(d.id) ?? d;
          out.push(now);
          // Left lagging by a session that ended without `close` (this session's own applies keep it lagging).
          if (!this.headerLag.has(d.k)) fresh.push(now);
        }
        if (fresh.length > 0) await this.store.commit({ docs: fresh }).catch(() => undefined);
        return out;
      });
    }
    return docs
      .filter((d) => (!filter.type || d.type === filter.type) && (filter.includeDeleted || !d.deleted))
      .map((d) => JSON.parse(d.header) as DocumentHeader);
  }

  /**
   * Rebuilds a document whose stored records do not read back (`CORRUPT_RECORD`): its local copy is dropped and
   * made again from the server's log and this replica's own actions still in the outbox. Its `local` scope (never
   * synced) is lost.
   */
  async repair(id: string): Promise<void> {
    const remote = this.remote;
    if (!remote) throw new FolioError("OFFLINE", "a repair needs the server (open the replica with a url)");
    const pages: string[] = [];
    for (let cursor = 0; ; ) {
      const text = await remote.pullDocument(cursor, 2000, id);
      const answer = JSON.parse(text) as { cursor: number; more: boolean };
      pages.push(text);
      cursor = answer.cursor;
      if (!answer.more) break;
    }
    await this.exclusive(async () => {
      this.core.unload(id, BRANCH);
      await this.store.deleteDocument(id, BRANCH);
      for (const page of pages) await this.integrate(page, () => ({}));
      const own = (await this.store.outbox()).filter((r) => r.doc === id);
      if (own.length > 0) await this.integrate(`[${own.map((r) => r.j).join(",")}]`, () => ({}));
    });
  }

  /** Closes the replica: stops syncing, waits for what is being stored, closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
    await this.queue;
    await this.rounds.catch(() => undefined);
    // Signatures waiting or under way are stored before the database closes (a row left unsigned is signed at its
    // push), and the headers `apply` left lagging as they are now.
    await this.signNow();
    await this.storeHeaders().catch(() => undefined);
    this.closed = true;
    this.store.close();
  }

  // ---- sync ----

  /** Runs one round now (push and pull) and resolves with what it moved; rejects with a FolioError (`OFFLINE`,
   * `UNAUTHORIZED`, …). Also restarts a sync stopped by `UNAUTHORIZED`. */
  async sync(): Promise<SyncReport> {
    if (!this.remote) throw new FolioError("OFFLINE", "this replica has no server (open it with a url)");
    this.stopped = false;
    const run = this.rounds.then(() => this.round());
    this.rounds = run.catch(() => undefined);
    return run;
  }

  /** The network is back (the browser's `online` event): retry now instead of at the end of the backoff. */
  reconnect(): void {
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.backoff = 500;
    this.liveBackoff = 500;
    this.requestSync();
  }

  /** Asks for a round soon (after local changes, at open, on reconnection), unless stopped or offline-waiting. */
  private requestSync(): void {
    if (!this.remote || this.stopped || this.closed || !(this.options.autoSync ?? true)) return;
    if (this.roundRunning) {
      this.syncRequested = true;
      return;
    }
    if (this.retryTimer) return; // a retry is scheduled
    this.roundRunning = true;
    queueMicrotask(() => {
      void this.background();
    });
  }

  private async background(): Promise<void> {
    try {
      do {
        this.syncRequested = false;
        const run = this.rounds.then(() => this.round());
        this.rounds = run.catch(() => undefined);
        await run;
      } while (this.syncRequested && !this.stopped && !this.closed);
      this.backoff = 500;
      this.roundRunning = false;
      this.openLive();
    } catch (e) {
      this.roundRunning = false;
      const err = e as FolioError;
      if (this.stopped || this.closed || err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN") return;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.requestSync();
      }, jitter(this.backoff));
      this.backoff = Math.min(this.backoff * 2, 30_000);
    }
  }

  private failed(e: unknown): FolioError {
    const err = e instanceof FolioError ? e : new FolioError("SYNC_ERROR", String((e as Error)?.message ?? e));
    if (err.code === "UNAUTHORIZED" || err.code === "FORBIDDEN") {
      this.stopped = true;
      this.socket?.close();
    }
    this.setStatus({ online: err.code !== "OFFLINE" && err.code !== "SERVER_ERROR" ? this.current.online : false, error: err.toJSON() });
    return err;
  }

  /** One round: compress, push, pull. */
  private async round(): Promise<SyncReport> {
    const remote = this.remote;
    if (!remote) throw new FolioError("OFFLINE", "no server");
    if (this.closed) throw new FolioError("CLOSED", "the replica is closed");
    try {
      const info = await remote.info();
      if (info.replica === this.replicaId) throw new FolioError("INVALID_REQUEST", "a replica cannot sync with itself");
      const report: SyncReport = {
        remote: info.replica,
        compressed: 0,
        pushed: 0,
        pushedNew: 0,
        pulled: 0,
        pulledNew: 0,
        conflicts: [],
      };
      if (this.options.compress ?? true) report.compressed = await this.exclusive(() => this.compressOutbox());
      // The push and the pull go at once: the pull excludes this replica's own entries, so it does not depend on
      // the push, and integrating the pulled pages (the page's CPU) overlaps the server's work on the push (the
      // page waits). Both finish before the round does (no pull outlives its round). A read token may pull but not
      // push: the outbox waits (status.error says why) and changes still come in.
      const [pushed, pulled] = await Promise.allSettled([
        this.push(remote, info.maxBodyBytes, report),
        this.pull(remote, info.replica, report),
      ]);
      let refused: FolioError | null = null;
      if (pushed.status === "rejected") {
        const e = pushed.reason as unknown;
        if (!(e instanceof FolioError && e.code === "FORBIDDEN")) throw e;
        refused = e;
      }
      if (pulled.status === "rejected") throw pulled.reason;
      const seen = new Set<string>();
      report.conflicts = report.conflicts.filter((c) => !seen.has(c.actionId) && seen.add(c.actionId));
      this.setStatus({
        online: true,
        error: refused ? refused.toJSON() : null,
        lastSyncAt: Date.now(),
        pending: await this.store.outboxCount(),
        conflicts: this.current.conflicts + report.conflicts.length,
      });
      return report;
    } catch (e) {
      throw this.failed(e);
    }
  }

  /** Compresses each document's run of own unsent global actions (after the sent clock). */
  private async compressOutbox(): Promise<number> {
    const sent = parseClock(await this.store.getMeta(META_SENT));
    const rows = await this.store.outbox();
    const runs = new Map<string, OutboxRecord[]>();
    for (const row of rows) {
      if (row.scope !== "global" || !after([row.ms, row.c], sent)) continue;
      const run = runs.get(row.doc) ?? [];
      run.push(row);
      runs.set(row.doc, run);
    }
    let saved = 0;
    for (const [id, run] of runs) {
      if (run.length < 2) continue;
      try {
        await this.ensureLoaded(id);
      } catch (e) {
        // A document that does not read back (see `repair`) is pushed as it is: its outbox rows are intact.
        if ((e as FolioError).code === "CORRUPT_RECORD") continue;
        throw e;
      }
      const ids = JSON.stringify(run.map((r) => r.id));
      type CompressOut = { appended?: AppendedOut[]; saved?: number; need?: Need[] };
      const ask = () => this.withTexts<CompressOut>(this.run((c) => c.compress(id, BRANCH, ids)), (v) => v.appended);
      let answer = ask();
      for (let i = 0; answer.need && i < 64; i++) {
        const need = answer.need[0];
        if (!need) break;
        this.core.unload(id, BRANCH);
        await this.ensureLoaded(id, need.before);
        answer = ask();
      }
      if (!answer.appended || answer.appended.length === 0) continue;
      const commit = this.records(answer.appended, true);
      // A row holds one change's actions of one document and scope, all after the sent clock or none: the run
      // has every action of its rows.
      commit.outboxDelete = { seqs: [...new Set(run.map((r) => r.seq as number))], count: run.length };
      commit.docs = this.docRecord(id);
      await this.store_(commit, [id]);
      saved += answer.saved ?? 0;
      this.changed([id]);
    }
    return saved;
  }

  private async push(remote: HttpRemote, maxBodyBytes: number, report: SyncReport): Promise<void> {
    // The rows waiting to be signed are signed now, and read once signed (not signed twice).
    await this.signNow();
    const rows = await this.store.outbox();
    const maxEntries = Math.max(1, this.options.pushEntries ?? 10_000);
    const maxBytes = Math.max(16 * 1024, Math.floor(maxBodyBytes / 2));
    let i = 0;
    while (i < rows.length) {
      const page: OutboxRecord[] = [];
      let bytes = 0;
      // Whole stored rows (the actions of one change): a row is deleted whole once acknowledged.
      while (i < rows.length) {
        const seq = (rows[i] as OutboxRecord).seq;
        let end = i;
        let rowBytes = 0;
        while (end < rows.length && (rows[end] as OutboxRecord).seq === seq) rowBytes += (rows[end++] as OutboxRecord).j.length + 1;
        if (page.length > 0 && (page.length + end - i > maxEntries || bytes + rowBytes > maxBytes)) break;
        page.push(...rows.slice(i, end));
        bytes += rowBytes;
        i = end;
      }
      // The sent clock is stored before the page leaves: these actions are never compressed afterwards.
      let latest: [number, number] = parseClock(await this.store.getMeta(META_SENT));
      for (const row of page) if (after([row.ms, row.c], latest)) latest = [row.ms, row.c];
      await this.store.putMeta({ [META_SENT]: `${latest[0]}.${latest[1]}` });
      // Rows stored before they were signed when made (or by an earlier version) are signed as they leave.
      const unsigned = this.identity ? page.filter((r) => !r.s) : [];
      const fresh = unsigned.length > 0 && this.identity ? await this.identity.sign(unsigned.map((r) => r.j)) : [];
      const signedNow = new Map(unsigned.map((r, k) => [r, fresh[k] as string]));
      const signed = page.map((r) => signedNow.get(r) ?? r.j);
      const body = `{"replica":${JSON.stringify(this.replicaId)},"entries":[${signed.join(",")}]}`;
      const answer = await remote.push(body);
      report.pushed += page.length;
      report.pushedNew += answer.new;
      report.conflicts.push(...answer.rejected);
      // Acknowledged: the rows leave the outbox (the push mark moves) only now. The page is a run of the rows read
      // in key order, so the key range from its first to its last row holds exactly its rows (rows added since
      // have later keys).
      await this.store.commit({
        outboxDeleteRange: { first: page[0]?.seq as number, last: page[page.length - 1]?.seq as number, count: page.length },
      });
      this.setStatus({ pending: Math.max(0, this.current.pending - page.length) });
    }
  }

  private async pull(remote: HttpRemote, remoteId: string, report: SyncReport): Promise<void> {
    const key = cursorKey(remoteId);
    const [known, stored] = await Promise.all([this.store.getMeta(META_REMOTE), this.store.getMeta(key)]);
    // Written when it changes only: a durable write costs a round a flush.
    if (known !== remoteId) await this.store.putMeta({ [META_REMOTE]: remoteId });
    let cursor = Number(stored ?? "0") || 0;
    const limit = Math.max(1, this.options.pullEntries ?? 10_000);
    for (;;) {
      const text = await remote.pull(cursor, limit, this.replicaId);
      // The page goes to the core as it is: its entry count, cursor and `more` come back with the integration.
      const from = cursor;
      const integrated = await this.exclusive(() =>
        this.integrate(text, (page) => ({ [key]: String(Math.max(from, page.cursor ?? from)) })),
      );
      report.pulled += integrated.entries;
      report.pulledNew += integrated.new;
      report.conflicts.push(...integrated.rejected);
      cursor = Math.max(cursor, integrated.cursor ?? cursor);
      if (!integrated.more) break;
    }
  }

  /** Integrates a pull answer (or live message, or entry list) and stores it with the meta rows `meta` makes of the
   * answer (the cursor) in one transaction. The core says which documents to load first (those it does not hold). */
  private async integrate(
    input: string | Uint8Array,
    meta: (page: { cursor?: number }) => Record<string, string>,
  ): Promise<{ new: number; rejected: RejectedAction[]; entries: number; cursor?: number; more?: boolean }> {
    // The core reads the entries once (`prepare`: parsed, each signature's message made, the distinct checks
    // listed), WebCrypto verifies the checks, and the core integrates what it kept with those verdicts.
    const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
    // wasm-bindgen's copy out of the module's memory: a plain ArrayBuffer.
    const parts = this.run((c) => c.prepare(bytes) as Uint8Array<ArrayBuffer>);
    const verdicts = (this.identity ? await verifyChecks(parts) : null) ?? new Uint8Array(0);
    const ask = () =>
      this.withTexts<IntegrateOut>(
        this.run((c) => c.integratePrepared(verdicts)),
        (v) => v.appended,
      );
    const loaded = new Set<string>();
    let answer = ask();
    for (let i = 0; answer.need && i < 64; i++) {
      for (const need of answer.need) {
        this.core.unload(need.documentId, BRANCH);
        await this.ensureLoaded(need.documentId, need.before);
        loaded.add(need.documentId);
      }
      answer = ask();
    }
    if (answer.need) throw new FolioError("CORRUPT_RECORD", "documents do not load far enough back to integrate");
    const ids = [...new Set((answer.appended ?? []).map((a) => a.documentId))];
    const commit = this.records(answer.appended ?? [], false);
    commit.docs = ids.flatMap((id) => this.docRecord(id) ?? []);
    commit.meta = meta(answer);
    await this.store_(commit, [...new Set([...ids, ...loaded])]);
    this.changed(ids);
    const out: { new: number; rejected: RejectedAction[]; entries: number; cursor?: number; more?: boolean } = {
      new: answer.new ?? 0,
      rejected: answer.rejected ?? [],
      entries: answer.entries ?? 0,
    };
    if (answer.cursor !== undefined) out.cursor = answer.cursor;
    if (answer.more !== undefined) out.more = answer.more;
    return out;
  }

  /** Follows the server live: each message is a pull's answer after the cursor. */
  private openLive(): void {
    const remote = this.remote;
    const WS = this.options.WebSocket ?? (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    if (!remote || !WS || this.socket || this.stopped || this.closed || this.options.live === false) return;
    void (async () => {
      const remoteId = await this.store.getMeta(META_REMOTE);
      if (!remoteId || this.socket || this.stopped || this.closed) return;
      const key = cursorKey(remoteId);
      const cursor = Number((await this.store.getMeta(key)) ?? "0") || 0;
      let ws: WebSocket;
      try {
        ws = new WS(remote.liveUrl(cursor, this.replicaId));
      } catch {
        return;
      }
      this.socket = ws;
      ws.onopen = () => {
        this.liveBackoff = 500;
      };
      ws.onmessage = (event: MessageEvent) => {
        const text = String(event.data);
        const run = this.rounds.then(async () => {
          const current = Number((await this.store.getMeta(key)) ?? "0") || 0;
          const integrated = await this.exclusive(() =>
            this.integrate(text, (page) => ({ [key]: String(Math.max(current, page.cursor ?? current)) })),
          );
          this.setStatus({
            online: true,
            lastSyncAt: Date.now(),
            conflicts: this.current.conflicts + integrated.rejected.length,
          });
        });
        this.rounds = run.catch((e) => {
          this.failed(e);
          ws.close();
        });
      };
      ws.onclose = () => {
        if (this.socket === ws) this.socket = null;
        if (this.stopped || this.closed) return;
        this.setStatus({ online: false });
        // Reconnect through a round (it pushes what waited and catches up), with a backoff that only a live
        // connection that opened resets (where the WebSocket is refused, rounds go on at that pace).
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          this.requestSync();
        }, jitter(this.liveBackoff));
        this.liveBackoff = Math.min(this.liveBackoff * 2, 30_000);
      };
    })();
  }
}
