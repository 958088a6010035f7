/**
 * The replica's IndexedDB database, one per origin and name (`folio:<name>`):
 *
 * - `ops`: every operation of every sync unit, key `[unit, index]`, its wire JSON text in `j` (never re-encoded);
 *   the consecutive operations of one unit that one change appends (a pulled page, an apply of many actions) are
 *   one record `{u, i, n, js}` at the key of the first: `n` texts in `js`; or, for the operations an integration
 *   appends, `{u, i, n, t}`: their `n` texts in one string, one per line, as the core answered them (no string
 *   per operation to make, clone and store). A record per operation cost Chromium ~50 µs of the page's time and
 *   more of the browser's (10,000 operations: 0.5 s and 1.5 s); a record per change costs that once. Database
 *   version 2 (the `t` records): a client that reads only version 1's records cannot open it.
 * - `keyframes`: global states at revisions, key `[unit, revision]`, so opening a document folds only its tail.
 * - `docs`: headers by `<id>/<branch>` (for `list`). An `apply` that changes only the revision and modification time
 *   writes none: the header stored by the first `apply` of a session says `lag: true` (the operations may be ahead
 *   of it), and `list` takes such a document's header from the core (loading it when it is not loaded). Creations,
 *   integrations, compressions and `close` store the header as it is.
 * - `outbox`: own replicated actions the server has not acknowledged, in order (auto-increment `seq`), as the
 *   entry text they are pushed as. Deleting rows acknowledged by a push *is* the push mark. The actions one change
 *   adds for one document and scope are one row (`js`, `ids`, `mss`, `cs`: one item per action); a row of one
 *   action keeps the first version's shape (`j`, `id`, `ms`, `c`). A row is pushed and deleted whole.
 * - `meta`: the replica id, the server's replica id, the pull cursor, the sent clock, and the outbox's action count
 *   as of the last transaction that deleted outbox rows (`outbox/count`).
 *
 * The outbox's action count (`status.pending`) is never counted by walking the store (Chromium counts by walking
 * it, deleted rows included until it compacts: 1 s after 100,000 rows were pushed). Every transaction that adds or
 * deletes outbox rows has a number `at` (one more than the last); rows it adds carry the count after it (`n`, `at`),
 * a transaction that deletes rows writes it to meta (`{k: "outbox/count", v, at}`). Opening reads that meta row and
 * the last outbox row in its one transaction: the later of the two (`at`) holds the count. So a change that only
 * adds (an `apply`) writes its rows and no meta row: one request less in the transaction an `apply` waits for.
 * Database version 3 (rows carry the count; meta is written only by deletions): a client of version 2 would read
 * a stale count, so it cannot open it.
 *
 * Every change is one transaction: operations with their header, keyframe, outbox rows and meta (a pull's cursor
 * moves in the transaction that stores what it covers), so a crash between two steps loses and duplicates nothing.
 * A transaction that only writes issues its requests at once and commits explicitly (`IDBTransaction.commit`):
 * the browser starts the commit without waiting for the page to see every request's result first.
 */
import { FolioError, storageError } from "./errors.js";
import { finished, request } from "./idb.js";

/** One operation (`j`, its wire JSON text), or `n` consecutive ones from index `i` as lines of one text (`t`). */
export type OpRecord = { u: string; i: number; j: string } | { u: string; i: number; n: number; t: string };

/** Consecutive operations of unit `u` from index `i`, as stored: one (`j`) or `n` of them (`js`, or lines of `t`). */
interface StoredOps {
  u: string;
  i: number;
  j?: string;
  n?: number;
  js?: string[];
  t?: string;
}

/** The stored records of `rows` (in key order): a block (`t`) as it is, single operations one per run of
 * consecutive indexes of a unit. */
function chunks(rows: OpRecord[]): StoredOps[] {
  const out: StoredOps[] = [];
  let k = 0;
  while (k < rows.length) {
    const first = rows[k] as OpRecord;
    if ("t" in first) {
      out.push({ u: first.u, i: first.i, n: first.n, t: first.t });
      k++;
      continue;
    }
    let end = k + 1;
    for (;;) {
      const r = rows[end];
      if (!r || "t" in r || r.u !== first.u || r.i !== first.i + (end - k)) break;
      end++;
    }
    out.push(
      end === k + 1
        ? { u: first.u, i: first.i, j: first.j }
        : { u: first.u, i: first.i, n: end - k, js: rows.slice(k, end).map((r) => (r as { j: string }).j) },
    );
    k = end;
  }
  return out;
}

/** How many operations a stored record holds. */
function size(r: StoredOps): number {
  return Array.isArray(r.js) ? r.js.length : typeof r.t === "string" ? (r.n ?? 0) : 1;
}

/** The operation texts of stored records from index `from` on, in order; a record that is not one throws. */
function texts(rows: StoredOps[], what: string, from = 0): string[] {
  const out: string[] = [];
  for (const r of rows) {
    if (typeof r?.j === "string" && typeof r.i === "number") {
      if (r.i >= from) out.push(r.j);
    } else if (Array.isArray(r?.js) && typeof r.i === "number" && r.js.every((t) => typeof t === "string")) {
      out.push(...(r.i >= from ? r.js : r.js.slice(from - r.i)));
    } else if (typeof r?.t === "string" && typeof r.i === "number" && typeof r.n === "number") {
      const lines = r.t.split("\n");
      if (lines.length !== r.n) {
        throw new FolioError("CORRUPT_RECORD", `${what}: the operation record ${r.i} of ${r.u} holds ${lines.length} texts, not ${r.n}`);
      }
      out.push(...(r.i >= from ? lines : lines.slice(from - r.i)));
    } else {
      throw new FolioError("CORRUPT_RECORD", `${what}: the operation record ${JSON.stringify(r?.i)} of ${r?.u} has no text`);
    }
  }
  return out;
}

/** One own action waiting in the outbox. */
export interface OutboxRecord {
  /** The key of the stored row that holds it (rows hold the actions of one change: see the outbox above). */
  seq?: number;
  doc: string;
  scope: string;
  /** The SyncEntry text pushed. */
  j: string;
  id: string;
  ms: number;
  c: number;
  /** Whether `j` carries this replica's signature already (signed when made: see identity.ts). */
  s?: boolean;
}

/** An outbox row as stored: one action, or several of one document and scope. */
interface StoredOutbox {
  seq?: number;
  doc: string;
  scope: string;
  j?: string;
  id?: string;
  ms?: number;
  c?: number;
  js?: string[];
  ids?: string[];
  mss?: number[];
  cs?: number[];
  /** Its actions carry their signatures (every action of a change is signed when it is made, or none is). */
  s?: boolean;
  /** The outbox's action count after the transaction that added this row, and that transaction's number (see the
   * module's notes; absent on rows written before version 3). */
  n?: number;
  at?: number;
}

/** The meta row of the outbox's action count, as of the transaction numbered `at` (absent before version 3), and
 * the highest row key deleted so far (`through`): rows added later have higher keys, and opening looks for the last
 * row above it (below it lie the deleted rows, which Chromium walks over until it compacts the store). */
interface CountRow {
  k: string;
  v: string;
  at?: number;
  through?: number;
}

/** The rows `records` are stored as: one per run of actions of one document and scope, with its records. */
function outboxRows(records: OutboxRecord[]): [StoredOutbox, OutboxRecord[]][] {
  const out: [StoredOutbox, OutboxRecord[]][] = [];
  let k = 0;
  while (k < records.length) {
    const first = records[k] as OutboxRecord;
    let end = k + 1;
    while (end < records.length && (records[end] as OutboxRecord).doc === first.doc && (records[end] as OutboxRecord).scope === first.scope) end++;
    const run = records.slice(k, end);
    const row: StoredOutbox =
      run.length === 1
        ? { doc: first.doc, scope: first.scope, j: first.j, id: first.id, ms: first.ms, c: first.c }
        : { doc: first.doc, scope: first.scope, js: run.map((r) => r.j), ids: run.map((r) => r.id), mss: run.map((r) => r.ms), cs: run.map((r) => r.c) };
    if (run.every((r) => r.s)) row.s = true;
    out.push([row, run]);
    k = end;
  }
  return out;
}

export interface DocRecord {
  k: string;
  id: string;
  branch: string;
  type: string;
  /** The header's JSON text. */
  header: string;
  deleted: boolean;
  /** Changes after it may have been stored without it: the revision and modification time in `header` may be
   * behind the operations (see `docs` in the module's notes). */
  lag?: boolean;
}

/** What one transaction writes. */
export interface Commit {
  ops?: OpRecord[];
  keyframes?: { u: string; rev: number; j: string }[];
  docs?: DocRecord[];
  outboxAdd?: OutboxRecord[];
  /** Outbox rows (`seqs`) holding `count` actions. */
  outboxDelete?: { seqs: number[]; count: number };
  /** Outbox rows `[first, last]` (sequence numbers, inclusive) holding `count` actions: a pushed page, deleted
   * with one request. */
  outboxDeleteRange?: { first: number; last: number; count: number };
  meta?: Record<string, string>;
}

const STORES = ["ops", "keyframes", "docs", "outbox", "meta"] as const;

/** The meta key of the outbox's row count. */
export const OUTBOX_COUNT = "outbox/count";

export function unitKey(id: string, scope: string, branch: string): string {
  return `${id}/${scope}/${branch}`;
}

export function docKey(id: string, branch: string): string {
  return `${id}/${branch}`;
}

function unitRange(u: string, from = 0, to = Number.MAX_SAFE_INTEGER): IDBKeyRange {
  return IDBKeyRange.bound([u, from], [u, to]);
}

export class ReplicaStore {
  /** The outbox's action count as of the transactions made so far (`undefined` before `opening`). Only the
   * replica that holds the database writes it (the host's Web Lock). */
  private outboxActions: number | undefined = undefined;
  /** The number of the last transaction that added or deleted outbox rows (see the module's notes), and the highest
   * row key deleted so far (`CountRow.through`). */
  private outboxAt = 0;
  private outboxThrough = 0;

  private constructor(
    readonly db: IDBDatabase,
    readonly name: string,
  ) {}

  static async open(factory: IDBFactory, name: string): Promise<ReplicaStore> {
    // Version 2: operation records may be blocks of lines (`t`). Version 3: outbox rows carry the outbox's count
    // and meta's count is written only when rows are deleted (see the module's notes). The stores are version 1's.
    const req = factory.open(`folio:${name}`, 3);
    req.onupgradeneeded = (event) => {
      const db = req.result;
      if (event.oldVersion >= 1) return;
      db.createObjectStore("ops", { keyPath: ["u", "i"] });
      db.createObjectStore("keyframes", { keyPath: ["u", "rev"] });
      db.createObjectStore("docs", { keyPath: "k" });
      db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("meta", { keyPath: "k" });
    };
    try {
      const db = await request(req);
      return new ReplicaStore(db, name);
    } catch (e) {
      throw storageError(e, `opening IndexedDB folio:${name}`);
    }
  }

  close(): void {
    this.db.close();
  }

  private tx(stores: readonly string[], mode: IDBTransactionMode): IDBTransaction {
    try {
      // Strict durability where the browser knows it: committed means flushed.
      return this.db.transaction(stores as string[], mode, { durability: "strict" });
    } catch (e) {
      throw storageError(e, "starting an IndexedDB transaction");
    }
  }

  /** What opening a replica reads, in one read-only transaction: meta values of `keys`, the outbox's action count
   * (meta's count and the last outbox row: see the module's notes), and whether meta rows under `prefix` are older
   * than `before` (see `pruneMeta`); and the whole meta rows of `rowKeys` (the replica's key pair: identity.ts). */
  async opening(
    keys: string[],
    prefix: string,
    before: number,
    rowKeys: string[] = [],
  ): Promise<{ meta: (string | undefined)[]; rows: unknown[]; pending: number; stale: boolean }> {
    const tx = this.tx(["meta", "outbox"], "readonly");
    const meta = tx.objectStore("meta");
    // The whole (small) meta store in one request: a `get` a key, or a cursor walking the store (a round trip to the
    // database a row), cost more. Then the last outbox row above the highest key deleted (a cursor from the end over
    // the rows a push just deleted would walk every one of them).
    const all = (await request(meta.getAll())) as { k: string; v?: string }[];
    const byKey = new Map(all.map((r) => [r.k, r]));
    const counted = byKey.get(OUTBOX_COUNT) as CountRow | undefined;
    const through = typeof counted?.through === "number" ? counted.through : 0;
    // (No IDBKeyRange where the factory was passed in without its globals, as in Node: the whole store.)
    const range = through > 0 && typeof IDBKeyRange !== "undefined" ? IDBKeyRange.lowerBound(through, true) : null;
    const lastRow = await new Promise<StoredOutbox | undefined>((resolve, reject) => {
      const cursor = tx.objectStore("outbox").openCursor(range, "prev");
      cursor.onsuccess = () => resolve(cursor.result?.value as StoredOutbox | undefined);
      cursor.onerror = () => reject(cursor.error);
    });
    const values = keys.map((k) => byKey.get(k)?.v);
    const rows: unknown[] = rowKeys.map((k) => byKey.get(k));
    const old = all.some((r) => {
      const v = String(r.v ?? "");
      return String(r.k).startsWith(prefix) && Number(v.slice(0, v.indexOf("|"))) < before;
    });
    const countAt = typeof counted?.at === "number" ? counted.at : 0;
    const rowAt = typeof lastRow?.at === "number" && typeof lastRow.n === "number" ? lastRow.at : -1;
    this.outboxAt = Math.max(countAt, rowAt, 0);
    this.outboxThrough = through;
    if (lastRow && rowAt > countAt) this.outboxActions = lastRow.n as number;
    else if (counted) this.outboxActions = Number(counted.v) || 0;
    else if (!lastRow) this.outboxActions = 0;
    else this.outboxActions = await this.countOutbox();
    return { meta: values, rows, pending: this.outboxActions, stale: old };
  }

  /** Counts the outbox's actions and stores the count (once per database, made before it kept a count). */
  private async countOutbox(): Promise<number> {
    const tx = this.tx(["outbox", "meta"], "readwrite");
    const done = finished(tx);
    const rows = (await request(tx.objectStore("outbox").getAll())) as StoredOutbox[];
    const count = rows.reduce((n, r) => n + (Array.isArray(r.js) ? r.js.length : 1), 0);
    tx.objectStore("meta").put({ k: OUTBOX_COUNT, v: String(count), at: ++this.outboxAt, through: this.outboxThrough } satisfies CountRow);
    await done;
    this.outboxActions = count;
    return count;
  }

  async getMeta(k: string): Promise<string | undefined> {
    const tx = this.tx(["meta"], "readonly");
    const row = (await request(tx.objectStore("meta").get(k))) as { v: string } | undefined;
    return row?.v;
  }

  async putMeta(values: Record<string, string>): Promise<void> {
    await this.commit({ meta: values });
  }

  /** Replaces the texts of stored outbox rows by their signed texts (`signed`: by row key, the row's texts in
   * order), for rows still there unsigned with exactly those actions (a row pushed, compressed or signed since is
   * left as it is). One transaction. */
  async signRows(signed: Map<number, { before: string[]; after: string[] }>): Promise<void> {
    const tx = this.tx(["outbox"], "readwrite");
    const done = finished(tx);
    const outbox = tx.objectStore("outbox");
    const sign = (row: StoredOutbox | undefined, texts: { before: string[]; after: string[] }) => {
      if (!row || row.s) return;
      const now = Array.isArray(row.js) ? row.js : [row.j ?? ""];
      if (now.length !== texts.before.length || now.some((j, k) => j !== texts.before[k])) return;
      const next: StoredOutbox = Array.isArray(row.js) ? { ...row, js: texts.after } : { ...row, j: texts.after[0] as string };
      next.s = true;
      outbox.put(next);
    };
    const seqs = [...signed.keys()];
    if (seqs.length > 1 && typeof IDBKeyRange !== "undefined") {
      // The rows' key range in one read (a `get` a row cost the transaction a task a row in the browser, and this
      // transaction holds the outbox while the applies behind it wait), then the writes and the commit at once.
      const read = outbox.getAll(IDBKeyRange.bound(Math.min(...seqs), Math.max(...seqs)));
      read.onsuccess = () => {
        for (const row of read.result as StoredOutbox[]) {
          const texts = signed.get(row.seq as number);
          if (texts) sign(row, texts);
        }
        tx.commit?.();
      };
    } else {
      // (No IDBKeyRange where the factory was passed in without its globals: a read a row.)
      for (const [seq, texts] of signed) {
        const read = outbox.get(seq);
        read.onsuccess = () => sign(read.result as StoredOutbox | undefined, texts);
      }
    }
    await done;
  }

  /** Writes everything in one transaction (all requests at once, then an explicit commit). */
  async commit(c: Commit): Promise<void> {
    const tx = this.tx(STORES, "readwrite");
    const done = finished(tx);
    let counted = 0;
    const added = c.outboxAdd?.length ?? 0;
    const deleted = (c.outboxDelete?.count ?? 0) + (c.outboxDeleteRange?.count ?? 0);
    const removes = c.outboxDelete !== undefined || c.outboxDeleteRange !== undefined;
    // This transaction's number and the outbox's count after it (see the module's notes). Transactions on the
    // outbox commit in the order they are made, so the count as of the ones made so far is theirs; if this one
    // fails, `uncount` takes it back.
    const track = this.outboxActions !== undefined && (added > 0 || removes);
    const at = track ? ++this.outboxAt : 0;
    const after = (this.outboxActions ?? 0) + added - deleted;
    try {
      const ops = tx.objectStore("ops");
      for (const record of chunks(c.ops ?? [])) ops.add(record);
      const keyframes = tx.objectStore("keyframes");
      for (const k of c.keyframes ?? []) keyframes.put(k);
      const docs = tx.objectStore("docs");
      for (const d of c.docs ?? []) docs.put(d);
      const outbox = tx.objectStore("outbox");
      for (const seq of c.outboxDelete?.seqs ?? []) outbox.delete(seq);
      if (c.outboxDeleteRange) outbox.delete(IDBKeyRange.bound(c.outboxDeleteRange.first, c.outboxDeleteRange.last));
      for (const [row, records] of outboxRows(c.outboxAdd ?? [])) {
        if (track) {
          row.n = after;
          row.at = at;
        }
        // Each record learns the key of its row (`signRows` finds it by that key).
        const req = outbox.add(row);
        req.onsuccess = () => {
          for (const r of records) r.seq = req.result as number;
        };
      }
      const meta = tx.objectStore("meta");
      for (const [k, v] of Object.entries(c.meta ?? {})) meta.put({ k, v });
      // Rows deleted: the count goes to meta (rows added carry it themselves). Written, not read and written (a read
      // would cost the transaction a round trip).
      if (track && removes) {
        const deletedUpTo = Math.max(c.outboxDeleteRange?.last ?? 0, ...(c.outboxDelete?.seqs ?? []));
        this.outboxThrough = Math.max(this.outboxThrough, Number.isFinite(deletedUpTo) ? deletedUpTo : 0);
        meta.put({ k: OUTBOX_COUNT, v: String(after), at, through: this.outboxThrough } satisfies CountRow);
      }
      if (track) {
        counted = added - deleted;
        this.outboxActions = after;
      }
      if (typeof tx.commit === "function") tx.commit();
    } catch (e) {
      try {
        tx.abort();
      } catch {
        // already aborted
      }
      done.catch(() => undefined);
      if (counted) this.uncount(counted);
      throw storageError(e, "storing operations");
    }
    try {
      await done;
    } catch (e) {
      if (counted) this.uncount(counted);
      throw storageError(e, "storing operations");
    }
  }

  /** A transaction that moved the outbox count by `delta` failed: the transactions made after it wrote counts that
   * include it, so the count without it is written again, in a transaction after all of them. */
  private uncount(delta: number): void {
    if (this.outboxActions === undefined) return;
    this.outboxActions -= delta;
    try {
      const row: CountRow = { k: OUTBOX_COUNT, v: String(this.outboxActions), at: ++this.outboxAt, through: this.outboxThrough };
      this.db.transaction(["meta"], "readwrite").objectStore("meta").put(row);
    } catch {
      // Closed: the next opening reads the count the last transaction wrote.
    }
  }

  /** The logs of a document as the replica core's `LoadInput` text: the whole `document` and `local` logs, the
   * global log from its latest keyframe at or below `before` (none: from 0). */
  async loadInput(id: string, branch: string, before?: number): Promise<string> {
    const tx = this.tx(["ops", "keyframes"], "readonly");
    const ops = tx.objectStore("ops");
    const g = unitKey(id, "global", branch);
    // The keyframe first: the global operations from it on are asked for as soon as it is read, while the
    // document and local logs are still being read (one round trip to the database less than waiting for all).
    const global = new Promise<{ keyframe: { rev: number; j: string } | null; from: number; rows: StoredOps[] }>((resolve, reject) => {
      const cursor = tx.objectStore("keyframes").openCursor(unitRange(g, 0, before ?? Number.MAX_SAFE_INTEGER), "prev");
      cursor.onerror = () => reject(cursor.error);
      cursor.onsuccess = () => {
        const keyframe = (cursor.result?.value as { rev: number; j: string } | undefined) ?? null;
        const from = keyframe && typeof keyframe.rev === "number" ? keyframe.rev : 0;
        // The operations from the keyframe on: the record that starts before it may hold the first of them.
        const straddling =
          from === 0
            ? Promise.resolve([] as StoredOps[])
            : new Promise<StoredOps[]>((done, fail) => {
                const before = ops.openCursor(IDBKeyRange.bound([g, 0], [g, from], false, true), "prev");
                before.onsuccess = () => {
                  const r = before.result?.value as StoredOps | undefined;
                  done(r && typeof r.i === "number" && size(r) > 1 && r.i + size(r) > from ? [r] : []);
                };
                before.onerror = () => fail(before.error);
              });
        const rest = request(ops.getAll(unitRange(g, from))) as Promise<StoredOps[]>;
        Promise.all([straddling, rest]).then(([a, b]) => resolve({ keyframe, from, rows: [...a, ...b] }), reject);
      };
    });
    const [documentOps, localOps, { keyframe, from, rows: globalOps }] = await Promise.all([
      request(ops.getAll(unitRange(unitKey(id, "document", branch)))) as Promise<StoredOps[]>,
      request(ops.getAll(unitRange(unitKey(id, "local", branch)))) as Promise<StoredOps[]>,
      global,
    ]);
    const what = `document ${id}`;
    const list = (rows: StoredOps[], start = 0) => texts(rows, what, start).join(",");
    const kf = keyframe && from > 0 ? keyframe.j : "null";
    return `{"id":${JSON.stringify(id)},"branch":${JSON.stringify(branch)},"documentOps":[${list(documentOps)}],"keyframe":${kf},"globalOps":[${list(globalOps, from)}],"localOps":[${list(localOps)}]}`;
  }

  /** Deletes a document's operations, keyframes and header (before `repair` rebuilds it), in one transaction. */
  async deleteDocument(id: string, branch: string): Promise<void> {
    const tx = this.tx(STORES, "readwrite");
    const done = finished(tx);
    for (const scope of ["document", "global", "local"]) {
      const range = unitRange(unitKey(id, scope, branch));
      tx.objectStore("ops").delete(range);
      tx.objectStore("keyframes").delete(range);
    }
    tx.objectStore("docs").delete(docKey(id, branch));
    try {
      await done;
    } catch (e) {
      throw storageError(e, "deleting a document");
    }
  }

  /** A whole unit log as a JSON array text. */
  async unitLog(id: string, scope: string, branch: string): Promise<string> {
    const tx = this.tx(["ops"], "readonly");
    const rows = (await request(tx.objectStore("ops").getAll(unitRange(unitKey(id, scope, branch))))) as StoredOps[];
    return `[${texts(rows, `document ${id}`).join(",")}]`;
  }

  /** Deletes the meta rows under `prefix` whose value starts with a time (`<ms>|…`) before `before`. */
  async pruneMeta(prefix: string, before: number): Promise<void> {
    const tx = this.tx(["meta"], "readwrite");
    const done = finished(tx);
    // The whole (small) store: no IDBKeyRange, which is not a global where the factory was passed in (Node).
    const cursor = tx.objectStore("meta").openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result;
      if (!c) return;
      const v = String((c.value as { v?: string }).v ?? "");
      if (String(c.key).startsWith(prefix) && Number(v.slice(0, v.indexOf("|"))) < before) c.delete();
      c.continue();
    };
    await done;
  }

  /** The outbox's actions, in order (the actions of a row: consecutive, with its `seq`). */
  async outbox(): Promise<OutboxRecord[]> {
    const tx = this.tx(["outbox"], "readonly");
    const rows = (await request(tx.objectStore("outbox").getAll())) as StoredOutbox[];
    return rows.flatMap((r): OutboxRecord[] =>
      Array.isArray(r.js)
        ? r.js.map((j, k) => ({ seq: r.seq, doc: r.doc, scope: r.scope, j, id: r.ids?.[k] ?? "", ms: r.mss?.[k] ?? 0, c: r.cs?.[k] ?? 0, s: !!r.s }))
        : [{ seq: r.seq, doc: r.doc, scope: r.scope, j: r.j ?? "", id: r.id ?? "", ms: r.ms ?? 0, c: r.c ?? 0, s: !!r.s }],
    );
  }

  /** The number of outbox rows (kept in meta: see `OUTBOX_COUNT`). */
  async outboxCount(): Promise<number> {
    return this.outboxActions ?? this.countOutbox();
  }

  async docs(): Promise<DocRecord[]> {
    const tx = this.tx(["docs"], "readonly");
    return (await request(tx.objectStore("docs").getAll())) as DocRecord[];
  }
}
