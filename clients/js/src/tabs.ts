/**
 * `Folio`, the class apps use (contract: `docs/spec/js-client.md`): one replica per origin and name, whatever the
 * number of tabs.
 *
 * - **worker** (where `SharedWorker` exists): a SharedWorker (`folio-worker.js`, named `folio:<name>`) hosts the
 *   replica and its one network connection; every tab talks to it over its MessagePort.
 * - **leader** (no SharedWorker, e.g. Chrome on Android): the tabs of a name queue for the Web Lock
 *   `folio-replica:<name>`; the tab holding it hosts the replica and serves the others over the BroadcastChannel
 *   `folio-tabs:<name>`. When it closes (or crashes) the browser frees the lock, the next tab in the queue hosts,
 *   announces itself, and the others send it again every call it had not answered. Pending actions are in
 *   IndexedDB (an `apply` resolves only once they are), so the new host pushes them.
 * - **local**: this context owns the replica directly (Node, workers, tests passing `indexedDB`/`fetch`/`WebSocket`,
 *   or `shared: "off"`).
 *
 * The API is the same in every mode; `folio.mode` says which one runs.
 */
import { FolioError } from "./errors.js";
import { Folio as FolioReplica, type ApplyResult, type OpenOptions } from "./folio.js";
import { Host } from "./host.js";
import { PROTOCOL, type HostOptions, type Method, type OnChannel, type ToHost, type ToTab } from "./protocol.js";
import type { ActionInput, Conflict, DocumentHeader, FolioDocument, Status, SyncReport } from "./types.js";

export type SharedMode = "auto" | "worker" | "leader" | "off";

export interface FolioOptions extends OpenOptions {
  /** How tabs share the replica: `auto` (default: a SharedWorker where there is one, else a leader tab elected with
   * Web Locks; the replica itself outside a window, or when `indexedDB`, `fetch` or `WebSocket` is given),
   * `worker`, `leader`, or `off` (this context owns it). */
  shared?: SharedMode;
  /** The SharedWorker's script (default: `folio-worker.js` beside this module). */
  workerUrl?: string | URL;
}

type Listener<T> = (value: T) => void;

/** What the facade needs from a replica, near or far. */
interface Backend {
  readonly replicaId: string;
  readonly status: Status;
  on(event: "status", listener: Listener<Status>): () => void;
  create(documentType: string, name?: string, options?: { id?: string; initialState?: unknown }): Promise<DocumentHeader>;
  apply(id: string, actions: ActionInput[]): Promise<ApplyResult>;
  get(id: string): Promise<FolioDocument | null>;
  subscribe(id: string, listener: Listener<FolioDocument>): () => void;
  sync(): Promise<SyncReport>;
  conflicts(id: string): Promise<Conflict[]>;
  list(filter?: { type?: string; includeDeleted?: boolean }): Promise<DocumentHeader[]>;
  repair(id: string): Promise<void>;
  reconnect(): void;
  close(): Promise<void>;
}

function randomId(): string {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function toError(e: { code: string; message: string; actionIndex?: number; status?: number }): FolioError {
  const extra: { actionIndex?: number; status?: number } = {};
  if (e.actionIndex !== undefined) extra.actionIndex = e.actionIndex;
  if (e.status !== undefined) extra.status = e.status;
  return new FolioError(e.code, e.message, extra);
}

interface PendingCall {
  m: Method;
  a: unknown[];
  sent: boolean;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/**
 * A tab's side of the protocol. `bind` gives it a way to reach a host (again, when the host changes): it says hello
 * and, once the host is ready, sends its subscriptions and every call not answered yet.
 */
class Client implements Backend {
  readonly tab = randomId();
  replicaId = "";
  private current: Status = { online: false, pending: 0, lastSyncAt: null, conflicts: 0, error: null };
  private post: ((m: ToHost) => void) | null = null;
  private hello = 0;
  private bound = false;
  private host = "";
  private n = 0;
  private readonly pending = new Map<number, PendingCall>();
  private readonly docListeners = new Map<string, Set<Listener<FolioDocument>>>();
  private readonly statusListeners = new Set<Listener<Status>>();
  /** The status an answer carried (`s`), as JSON: the `status` message after it says the same. */
  private told: string | null = null;
  private firstReady!: (ok: boolean, error?: FolioError) => void;
  readonly ready: Promise<void>;
  closed = false;
  /** Called after close (releases locks, closes ports). */
  onClose: () => Promise<void> = async () => undefined;

  constructor(private readonly options: HostOptions) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.firstReady = (ok, error) => (ok ? resolve() : reject(error));
    });
  }

  /** The host this tab talks to now. */
  get hostId(): string {
    return this.host;
  }

  bind(post: (m: ToHost) => void): void {
    this.post = post;
    this.bound = false;
    this.hello++;
    post({ t: "hello", v: PROTOCOL, h: this.hello, tab: this.tab, options: this.options, texts: true });
  }

  receive(message: ToTab): void {
    if (this.closed) return;
    switch (message.t) {
      case "ready": {
        if (message.h !== this.hello) return;
        this.bound = true;
        this.host = message.host;
        this.replicaId = message.replicaId;
        this.setStatus(message.status);
        for (const doc of this.docListeners.keys()) this.post?.({ t: "sub", doc });
        for (const [n, call] of this.pending) {
          this.post?.(call.sent ? { t: "call", n, m: call.m, a: call.a, r: true } : { t: "call", n, m: call.m, a: call.a });
          call.sent = true;
        }
        this.firstReady(true);
        return;
      }
      case "refused":
        if (message.h === this.hello) this.firstReady(false, toError(message.error));
        return;
      case "ret":
      case "err": {
        const call = this.pending.get(message.n);
        if (!call) return;
        this.pending.delete(message.n);
        // The status the call left (its `status` message follows, and is not told twice): seen before the call
        // resolves.
        if (message.s) {
          this.setStatus(message.s);
          this.told = JSON.stringify(message.s);
        }
        if (message.t === "ret") call.resolve(typeof message.j === "string" ? JSON.parse(message.j) : message.v);
        else call.reject(toError(message.e));
        return;
      }
      case "status": {
        const told = this.told;
        this.told = null;
        if (told !== null && told === JSON.stringify(message.s)) return;
        this.setStatus(message.s);
        return;
      }
      case "doc": {
        const set = this.docListeners.get(message.doc);
        if (!set?.size) return;
        const doc = (typeof message.j === "string" ? JSON.parse(message.j) : message.v) as FolioDocument;
        for (const l of set) {
          try {
            l(doc);
          } catch (e) {
            console.error("folio subscriber failed", e);
          }
        }
        return;
      }
    }
  }

  private setStatus(s: Status): void {
    this.current = s;
    for (const l of this.statusListeners) {
      try {
        l({ ...s });
      } catch (e) {
        console.error("folio status listener failed", e);
      }
    }
  }

  private call<T>(m: Method, ...a: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new FolioError("CLOSED", "the replica is closed"));
    return new Promise<T>((resolve, reject) => {
      const n = ++this.n;
      const call: PendingCall = { m, a, sent: false, resolve: resolve as (v: unknown) => void, reject };
      this.pending.set(n, call);
      if (this.bound) {
        this.post?.({ t: "call", n, m, a });
        call.sent = true;
      }
    });
  }

  get status(): Status {
    return { ...this.current };
  }

  on(event: "status", listener: Listener<Status>): () => void {
    if (event !== "status") throw new FolioError("INVALID_REQUEST", `no event ${String(event)}`);
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  create(documentType: string, name = "", options: { id?: string; initialState?: unknown } = {}): Promise<DocumentHeader> {
    return this.call("create", documentType, name, options);
  }
  apply(id: string, actions: ActionInput[]): Promise<ApplyResult> {
    return this.call("apply", id, actions);
  }
  get(id: string): Promise<FolioDocument | null> {
    return this.call("get", id);
  }
  sync(): Promise<SyncReport> {
    return this.call("sync");
  }
  conflicts(id: string): Promise<Conflict[]> {
    return this.call("conflicts", id);
  }
  list(filter: { type?: string; includeDeleted?: boolean } = {}): Promise<DocumentHeader[]> {
    return this.call("list", filter);
  }
  repair(id: string): Promise<void> {
    return this.call("repair", id);
  }
  reconnect(): void {
    this.call("reconnect").catch(() => undefined);
  }

  subscribe(id: string, listener: Listener<FolioDocument>): () => void {
    let set = this.docListeners.get(id);
    if (!set) {
      set = new Set();
      this.docListeners.set(id, set);
      if (this.bound) this.post?.({ t: "sub", doc: id });
    }
    set.add(listener);
    return () => {
      if (!set.delete(listener) || set.size > 0) return;
      this.docListeners.delete(id);
      if (this.bound) this.post?.({ t: "unsub", doc: id });
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Calls already sent are answered before `bye` (the host handles a connection's messages in order), except
    // while no host is bound: those fail.
    const waiting = [...this.pending.values()].map((c) =>
      new Promise<void>((r) => {
        const { resolve, reject } = c;
        c.resolve = (v) => (resolve(v), r());
        c.reject = (e) => (reject(e), r());
      }),
    );
    if (this.bound) await Promise.race([Promise.all(waiting), new Promise((r) => setTimeout(r, 5_000))]);
    this.post?.({ t: "bye" });
    this.closed = true;
    for (const call of this.pending.values()) call.reject(new FolioError("CLOSED", "the replica is closed"));
    this.pending.clear();
    this.firstReady(false, new FolioError("CLOSED", "the replica is closed"));
    await this.onClose();
  }
}

/** Holds the Web Lock `name` until `release` is called; resolves once it is held. */
function holdLock(name: string, options: LockOptions = {}): { held: Promise<boolean>; release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let granted!: (held: boolean) => void;
  const held = new Promise<boolean>((r) => (granted = r));
  navigator.locks
    .request(name, options, async (lock) => {
      granted(lock !== null);
      if (lock) await released;
    })
    .catch(() => granted(false));
  return { held, release };
}

function hostOptions(options: FolioOptions): HostOptions {
  const out: HostOptions = { name: options.name ?? "default" };
  for (const k of ["url", "token", "autoSync", "live", "compress", "pushEntries", "pullEntries"] as const) {
    if (options[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = options[k];
  }
  if (options.wasm !== undefined) {
    if (typeof options.wasm !== "string" && !(options.wasm instanceof URL)) {
      throw new FolioError("INVALID_REQUEST", "a shared replica loads its .wasm from a URL");
    }
    out.wasm = new URL(String(options.wasm), globalThis.location?.href).href;
  }
  return out;
}

function chooseMode(options: FolioOptions): "worker" | "leader" | "off" {
  const asked = options.shared ?? "auto";
  if (asked === "off") return "off";
  const g = globalThis as { SharedWorker?: unknown; BroadcastChannel?: unknown; document?: unknown };
  const canLead = !!g.BroadcastChannel && !!globalThis.navigator?.locks;
  if (asked === "worker") {
    if (!g.SharedWorker) throw new FolioError("INVALID_REQUEST", "SharedWorker is not available here");
    return "worker";
  }
  if (asked === "leader") {
    if (!canLead) throw new FolioError("INVALID_REQUEST", "Web Locks and BroadcastChannel are not available here");
    return "leader";
  }
  const own = options.indexedDB !== undefined || options.fetch !== undefined || options.WebSocket !== undefined;
  if (own || !g.document || (options.wasm !== undefined && typeof options.wasm !== "string" && !(options.wasm instanceof URL))) {
    return "off";
  }
  if (g.SharedWorker && canLead) return "worker";
  if (canLead) return "leader";
  return "off";
}

/** Connects to the SharedWorker hosting `options.name`. */
async function viaWorker(options: FolioOptions, client: Client): Promise<void> {
  const url = options.workerUrl ?? new URL("./folio-worker.js", import.meta.url);
  const tabLock = holdLock(`folio-tab:${client.tab}`);
  // The worker is reached while the lock is being granted; `hello` waits for the lock (the host watches it to
  // notice this tab going away).
  const worker = new SharedWorker(url, { type: "module", name: `folio:${options.name ?? "default"}` });
  const port = worker.port;
  port.onmessage = (e: MessageEvent<ToTab>) => client.receive(e.data);
  const failed = new Promise<never>((_, reject) => {
    worker.onerror = () => reject(new FolioError("WORKER_FAILED", `the shared worker ${String(url)} did not start`));
  });
  failed.catch(() => undefined);
  client.onClose = async () => {
    port.close();
    tabLock.release();
  };
  await tabLock.held;
  client.bind((m) => port.postMessage(m));
  try {
    await Promise.race([client.ready, failed]);
  } catch (e) {
    port.close();
    tabLock.release();
    throw e;
  }
}

/** Joins the tabs of `options.name`: hosts the replica while holding its lock, otherwise goes through the host. */
async function viaLeader(options: FolioOptions, client: Client, roles: { leading: boolean }): Promise<void> {
  const name = options.name ?? "default";
  const tabLock = holdLock(`folio-tab:${client.tab}`);
  await tabLock.held;
  const channel = new BroadcastChannel(`folio-tabs:${name}`);
  let host: Host | null = null;
  const fromFollowers = new Map<string, (m: ToHost) => void>();
  const toHost = (m: ToHost) => channel.postMessage({ k: "host", from: client.tab, m } satisfies OnChannel);
  channel.onmessage = (e: MessageEvent<OnChannel>) => {
    const d = e.data;
    if (host) {
      if (d.k === "host") {
        let deliver = fromFollowers.get(d.from);
        if (!deliver || d.m.t === "hello") {
          deliver?.({ t: "bye" });
          const to = d.from;
          deliver = host.connect({ post: (m) => channel.postMessage({ k: "tab", to, m } satisfies OnChannel) });
          fromFollowers.set(to, deliver);
        }
        deliver(d.m);
        if (d.m.t === "bye") fromFollowers.delete(d.from);
      }
      return;
    }
    if (d.k === "leader") {
      if (d.leader !== client.hostId) client.bind(toHost);
    } else if (d.k === "tab" && d.to === client.tab) {
      client.receive(d.m);
    }
  };
  // Queue for the replica's lock: held, this tab hosts until it closes (or the browser frees it when the tab dies).
  const lock = holdLock(`folio-replica:${name}`);
  let closing = false;
  void lock.held.then((held) => {
    if (!held || closing) return;
    // Calls of followers change the replica at most once: a leader can die between storing and answering.
    host = new Host(client.tab, undefined, { durableCalls: true });
    roles.leading = true;
    const local = new MessageChannel();
    const deliver = host.connect({ post: (m) => local.port2.postMessage(m), close: () => local.port2.close() });
    local.port2.onmessage = (e: MessageEvent<ToHost>) => deliver(e.data);
    local.port1.onmessage = (e: MessageEvent<ToTab>) => client.receive(e.data);
    client.bind((m) => local.port1.postMessage(m));
    void client.ready.then(() => channel.postMessage({ k: "leader", leader: client.tab } satisfies OnChannel), () => undefined);
  });
  client.onClose = async () => {
    closing = true;
    const h = host;
    host = null;
    if (h) await h.close();
    lock.release();
    tabLock.release();
    channel.close();
  };
  client.bind(toHost);
  await client.ready;
}

/** One replica per origin and name, shared by the tabs (see the module's notes). */
export class Folio {
  private readonly onOnline = () => this.backend.reconnect();

  private constructor(
    private readonly backend: Backend,
    private readonly kind: "worker" | "leader" | "off",
    private readonly roles = { leading: false },
  ) {
    // The browser says the network is back: sync now rather than at the end of the backoff.
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /** Opens (or joins) the replica `name` of this origin and, with a `url`, starts syncing. */
  static async open(options: FolioOptions = {}): Promise<Folio> {
    const mode = chooseMode(options);
    if (mode === "off") return new Folio(await FolioReplica.open(options), "off");
    if (mode === "worker") {
      const client = new Client(hostOptions(options));
      try {
        await viaWorker(options, client);
        return new Folio(client, "worker");
      } catch (e) {
        // The worker's script did not load (or the browser refused it): the tabs elect a leader instead.
        if (options.shared === "worker" || !(e instanceof FolioError) || e.code !== "WORKER_FAILED") throw e;
        console.warn(`folio: ${e.message}; electing a leader tab instead`);
      }
    }
    const client = new Client(hostOptions(options));
    const roles = { leading: false };
    await viaLeader(options, client, roles);
    return new Folio(client, "leader", roles);
  }

  /** Which mode runs: `worker` (a SharedWorker hosts the replica), `leader` (this tab hosts it for the others),
   * `follower` (another tab hosts it), `local` (this context owns it alone). */
  get mode(): "worker" | "leader" | "follower" | "local" {
    if (this.kind === "off") return "local";
    if (this.kind === "worker") return "worker";
    return this.roles.leading ? "leader" : "follower";
  }

  get replicaId(): string {
    return this.backend.replicaId;
  }

  /** Sync's state now (the same in every tab). */
  get status(): Status {
    return this.backend.status;
  }

  on(event: "status", listener: Listener<Status>): () => void {
    return this.backend.on(event, listener);
  }

  create(documentType: string, name = "", options: { id?: string; initialState?: unknown } = {}): Promise<DocumentHeader> {
    return this.backend.create(documentType, name, options);
  }

  apply(id: string, actions: ActionInput[]): Promise<ApplyResult> {
    return this.backend.apply(id, actions);
  }

  get<G = unknown, L = unknown>(id: string): Promise<FolioDocument<G, L> | null> {
    return this.backend.get(id) as Promise<FolioDocument<G, L> | null>;
  }

  subscribe<G = unknown, L = unknown>(id: string, listener: Listener<FolioDocument<G, L>>): () => void {
    return this.backend.subscribe(id, listener as Listener<FolioDocument>);
  }

  sync(): Promise<SyncReport> {
    return this.backend.sync();
  }

  conflicts(id: string): Promise<Conflict[]> {
    return this.backend.conflicts(id);
  }

  list(filter: { type?: string; includeDeleted?: boolean } = {}): Promise<DocumentHeader[]> {
    return this.backend.list(filter);
  }

  repair(id: string): Promise<void> {
    return this.backend.repair(id);
  }

  close(): Promise<void> {
    globalThis.removeEventListener?.("online", this.onOnline);
    return this.backend.close();
  }
}
