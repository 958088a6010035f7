/**
 * The replica's host: one `FolioReplica` (the IndexedDB replica and its one network connection) serving every tab
 * of an origin and name. It runs in a SharedWorker (`worker.ts`) or, where there is none, in the tab that holds the
 * Web Lock `folio-replica:<name>` (`tabs.ts`). Whoever hosts holds that lock while the replica is open, so two
 * replicas never write the same database at once (a new app version's worker waits for the old one to let go).
 *
 * Each tab is a connection: its calls go to the replica in order of arrival (the replica queues them itself), its
 * subscriptions share one replica subscription per document, and every status change goes to every tab. A tab that
 * goes away without saying `bye` (closed, crashed) is noticed through its own Web Lock `folio-tab:<name>:<tab>`:
 * the host asks for it, and gets it when the tab is gone.
 */
import { FolioError } from "./errors.js";
import { Folio as FolioReplica, type OpenOptions } from "./folio.js";
import { METHODS, PROTOCOL, type HostOptions, type Method, type ToHost, type ToTab, type WireError } from "./protocol.js";
import type { FolioDocument, Status } from "./types.js";

/** How the host sends to one tab. */
export interface HostLink {
  post(message: ToTab): void;
  close?(): void;
}

export function wireError(e: unknown): WireError {
  if (e instanceof FolioError) {
    const out: WireError = { code: e.code, message: e.message };
    if (e.actionIndex !== undefined) out.actionIndex = e.actionIndex;
    if (e.status !== undefined) out.status = e.status;
    return out;
  }
  const err = e as { name?: string; message?: string } | null;
  return { code: "INTERNAL", message: `${err?.name ?? "Error"}: ${err?.message ?? String(e)}` };
}

class Connection {
  tab = "";
  readonly subs = new Set<string>();
  alive = true;
  /** The status changed since it was last sent here. */
  statusDue = false;
  /** The tab reads documents as JSON text and the status in answers (`texts` in its `hello`). */
  texts = false;
  constructor(readonly link: HostLink) {}
  post(message: ToTab): void {
    if (!this.alive) return;
    try {
      this.link.post(message);
    } catch {
      this.alive = false;
    }
  }
}

type Replica = Pick<FolioReplica, "replicaId" | "status" | "on" | "subscribeText" | "getText" | "applyText" | "deferNotifications" | "close"> &
  Record<Method, (...args: never[]) => unknown>;

export class Host {
  private replica: Promise<Replica> | null = null;
  private readonly connections = new Set<Connection>();
  private readonly docSubs = new Map<string, { count: number; off: () => void; on?: Replica }>();
  private closed = false;
  private opened: HostOptions | null = null;
  private acquired: Promise<void> | null = null;
  /** The replica's latest status, and whether a task that sends it to the tabs is scheduled (`statusChanged`). */
  private status: Status | null = null;
  private statusTask = false;

  /**
   * @param id this host's id (sent in `ready`; a tab seeing another id knows the host changed)
   * @param acquire called once before the replica opens: resolves when this host may own the database
   */
  constructor(
    readonly id: string,
    private readonly acquire: (name: string) => Promise<void> = async () => undefined,
    private readonly config: { durableCalls?: boolean } = {},
  ) {}

  /** A new tab. */
  connect(link: HostLink): (message: ToHost) => void {
    const conn = new Connection(link);
    this.connections.add(conn);
    return (message) => {
      void this.receive(conn, message);
    };
  }

  private open(options: HostOptions): Promise<Replica> {
    const changed = this.opened && (this.opened.url !== options.url || this.opened.token !== options.token);
    if (this.replica && changed) {
      // A tab brings another server or token (the page asked for a new one): the replica reopens with it, its
      // subscriptions moved over (closing waits for what it is storing).
      const old = this.replica;
      this.replica = old.catch(() => null).then(async (r) => {
        await r?.close();
        return this.start(options);
      });
    } else if (!this.replica) {
      this.replica = this.start(options);
    }
    const opening = this.replica;
    opening.catch(() => {
      if (this.replica === opening) this.replica = null;
    });
    return opening;
  }

  private async start(options: HostOptions): Promise<Replica> {
    this.acquired ??= this.acquire(options.name);
    await this.acquired;
    this.opened = options;
    const open: OpenOptions = { ...options };
    const replica = (await FolioReplica.open(open)) as unknown as Replica;
    // A call's answer goes before the documents it changed and the status: the caller waits for neither.
    replica.deferNotifications();
    replica.on("status", (s: Status) => this.statusChanged(s));
    for (const [doc, slot] of this.docSubs) {
      slot.off = replica.subscribeText(doc, this.forward(doc));
      slot.on = replica;
    }
    return replica;
  }

  /** A new status goes to every tab in a task of its own, after the answers of the calls that changed it (which
   * carry it: see `answer`). The same status is sent once. */
  private statusChanged(s: Status): void {
    this.status = s;
    for (const c of this.connections) c.statusDue = true;
    if (this.statusTask) return;
    this.statusTask = true;
    setTimeout(() => {
      this.statusTask = false;
      const now = this.status;
      if (!now) return;
      for (const c of this.connections) {
        if (!c.statusDue) continue;
        c.statusDue = false;
        c.post({ t: "status", s: now });
      }
    }, 0);
  }

  /** Answers a call, with the status when it changed since this tab last heard it. A tab that said `texts` reads
   * it there; for others the `status` message follows anyway. */
  private answer(conn: Connection, message: { t: "ret"; n: number; v: unknown; j?: string } | { t: "err"; n: number; e: WireError }): void {
    if (!conn.statusDue || !this.status) return conn.post(message);
    conn.post({ ...message, s: this.status });
    if (conn.texts) conn.statusDue = false;
  }

  /** Sends a document's text to the tabs subscribed to it (parsed once for tabs that read objects). */
  private forward(doc: string): (text: string) => void {
    return (text) => {
      let parsed: FolioDocument | undefined;
      for (const c of this.connections) {
        if (!c.subs.has(doc)) continue;
        if (c.texts) c.post({ t: "doc", doc, j: text });
        else c.post({ t: "doc", doc, v: (parsed ??= JSON.parse(text) as FolioDocument) });
      }
    };
  }

  private async receive(conn: Connection, message: ToHost): Promise<void> {
    if (this.closed || !conn.alive) return;
    switch (message.t) {
      case "hello": {
        if (message.v !== PROTOCOL) {
          conn.post({
            t: "refused",
            h: message.h,
            error: { code: "VERSION_MISMATCH", message: `the replica's host speaks protocol ${PROTOCOL}, the tab ${message.v}: reload` },
          });
          return;
        }
        conn.tab = message.tab;
        conn.texts = message.texts === true;
        this.watch(conn);
        try {
          const replica = await this.open(message.options);
          conn.post({ t: "ready", v: PROTOCOL, h: message.h, host: this.id, replicaId: replica.replicaId, status: replica.status });
        } catch (e) {
          conn.post({ t: "refused", h: message.h, error: wireError(e) });
        }
        return;
      }
      case "call": {
        try {
          if (!METHODS.includes(message.m)) throw new FolioError("INVALID_REQUEST", `no method ${message.m}`);
          if (!this.replica) throw new FolioError("CLOSED", "say hello first");
          const replica = await this.replica;
          const fn = replica[message.m] as (...args: unknown[]) => unknown;
          let args = message.a;
          if (this.config.durableCalls && (message.m === "apply" || message.m === "create")) {
            // The answer is stored with the change: sent again to the next host, the call is not made twice.
            const call = { callId: `${conn.tab}:${message.n}`, retry: message.r === true };
            // apply(id, actions, options) and create(type, name, options): the options are the third argument.
            args = [...message.a];
            if (message.m === "create" && args[1] === undefined) args[1] = "";
            args[2] = { ...((args[2] as object | undefined) ?? {}), ...call };
          }
          if (message.m === "get" && conn.texts) {
            // The document's text as the core wrote it: no parse here, no structured clone of the object.
            const j = await replica.getText(String(args[0]));
            this.answer(conn, { t: "ret", n: message.n, v: null, j });
            return;
          }
          if (message.m === "apply" && conn.texts) {
            // The operations' texts as the core wrote them, likewise.
            const j = await replica.applyText(...(args as Parameters<Replica["applyText"]>));
            this.answer(conn, { t: "ret", n: message.n, v: null, j });
            return;
          }
          const v = await fn.apply(replica, args);
          this.answer(conn, { t: "ret", n: message.n, v: v === undefined ? null : v });
        } catch (e) {
          this.answer(conn, { t: "err", n: message.n, e: wireError(e) });
        }
        return;
      }
      case "sub":
        if (!conn.subs.has(message.doc)) {
          conn.subs.add(message.doc);
          await this.subscribeDoc(message.doc);
        }
        return;
      case "unsub":
        if (conn.subs.delete(message.doc)) this.unsubscribeDoc(message.doc);
        return;
      case "bye":
        this.drop(conn);
        return;
    }
  }

  private async subscribeDoc(doc: string): Promise<void> {
    const entry = this.docSubs.get(doc);
    if (entry) {
      entry.count++;
      return;
    }
    const slot: { count: number; off: () => void; on?: Replica } = { count: 1, off: () => undefined };
    this.docSubs.set(doc, slot);
    const replica = await this.replica?.catch(() => null);
    if (!replica || this.docSubs.get(doc) !== slot || slot.on === replica) return;
    slot.off = replica.subscribeText(doc, this.forward(doc));
    slot.on = replica;
  }

  private unsubscribeDoc(doc: string): void {
    const entry = this.docSubs.get(doc);
    if (!entry) return;
    if (--entry.count <= 0) {
      entry.off();
      this.docSubs.delete(doc);
    }
  }

  /** Notices a tab that disappears without `bye`: its lock becomes free when it is gone. */
  private watch(conn: Connection): void {
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (!locks || !conn.tab) return;
    void locks
      .request(`folio-tab:${conn.tab}`, { mode: "exclusive" }, async () => {
        this.drop(conn);
      })
      .catch(() => undefined);
  }

  private drop(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    conn.alive = false;
    for (const doc of conn.subs) this.unsubscribeDoc(doc);
    conn.subs.clear();
    try {
      conn.link.close?.();
    } catch {
      // already closed
    }
  }

  /** The network is back: the replica retries now (its backoff would wait). */
  reconnect(): void {
    void this.replica?.then((r) => r.reconnect()).catch(() => undefined);
  }

  /** The number of tabs connected now. */
  get tabs(): number {
    return this.connections.size;
  }

  /** Closes the replica (waits for what it is storing). */
  async close(): Promise<void> {
    this.closed = true;
    const replica = this.replica;
    this.replica = null;
    if (replica) await (await replica.catch(() => null))?.close();
  }
}
