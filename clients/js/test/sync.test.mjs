// The browser replica (fake-indexeddb in Node, the WebAssembly core) against a real `folio serve` and a Rust replica
// (`folio sync` from the CLI): offline work, reopening, convergence with conflicts and rejections.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Folio } from "../dist/folio-client.js";
import { WASM, api, folio, startServer, tempDir } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const open = (factory, name = "default", extra = {}) =>
  Folio.open({ url: server.url, token: server.token, name, indexedDB: factory, wasm: WASM, autoSync: false, ...extra });

async function rustDoc(dataDir, id) {
  return JSON.parse(await folio(["doc", "get", id, "--json", "--data-dir", dataDir]));
}

async function rustSync(dataDir) {
  return JSON.parse(await folio(["sync", "--remote", server.url, "--token", server.token, "--data-dir", dataDir, "--json"])).report;
}

test("offline work survives a reopen and reaches the server", async () => {
  const idb = new IDBFactory();
  const offline = await Folio.open({ name: "offline", indexedDB: idb, wasm: WASM });
  const header = await offline.create("folio/todo-list", "Groceries");
  const r = await offline.apply(header.id, [
    { type: "ADD_TODO", input: { id: "milk", title: "Buy milk" } },
    { type: "ADD_TODO", input: { id: "eggs", title: "Buy eggs" } },
  ]);
  assert.equal(r.revision, 2);
  assert.equal(r.operations.length, 2);
  await assert.rejects(offline.apply(header.id, [{ type: "ADD_TODO", input: { id: "x", title: " " } }]), (e) => {
    assert.equal(e.code, "EMPTY_TITLE");
    assert.equal(e.actionIndex, 0);
    return true;
  });
  assert.equal(offline.status.pending, 3);
  const before = await offline.get(header.id);
  await offline.close();

  const again = await open(idb, "offline");
  assert.equal(again.status.pending, 3, "pending actions survive a reopen");
  assert.deepEqual(await again.get(header.id), before);
  assert.deepEqual((await again.list()).map((h) => h.id), [header.id]);
  const report = await again.sync();
  assert.equal(report.pushed, 3);
  assert.equal(again.status.pending, 0);
  assert.equal(again.status.online, true);
  const served = await api(server, `/v1/documents/${header.id}`);
  assert.equal(served.stateHash, before.stateHash);
  assert.deepEqual(served.state.global, before.state.global);
  await again.close();
});

test("a browser, a Rust replica and the server converge, with a refused action reported everywhere", async () => {
  const rust = tempDir("folio-rust-");
  const browser = await open(new IDBFactory(), "b");
  try {
    const doc = await browser.create("folio/json", "Shared");
    await browser.apply(doc.id, [{ type: "SET", input: { path: "/list", value: ["x", "y"] } }]);
    const todo = await browser.create("folio/todo-list", "Todos");
    await browser.apply(todo.id, [{ type: "ADD_TODO", input: { id: "a", title: "first" } }]);
    await browser.sync();
    await rustSync(rust.dir);
    assert.equal((await rustDoc(rust.dir, doc.id)).stateHash, (await browser.get(doc.id)).stateHash);

    // Concurrent edits: both remove element 0 (the second in the total order is refused where it is merged), both
    // edit the same todo item and add their own.
    await folio(["doc", "apply", doc.id, "REMOVE", '{"path":"/list","index":0}', "--data-dir", rust.dir]);
    await folio(["doc", "apply", doc.id, "REMOVE", '{"path":"/list","index":0}', "--data-dir", rust.dir]);
    await folio(["doc", "apply", todo.id, "UPDATE_TODO", '{"id":"a","title":"rust"}', "--data-dir", rust.dir]);
    await folio(["doc", "apply", todo.id, "ADD_TODO", '{"id":"r","title":"from rust"}', "--data-dir", rust.dir]);
    await browser.apply(doc.id, [{ type: "REMOVE", input: { path: "/list", index: 0 } }]);
    await browser.apply(doc.id, [{ type: "SET", input: { path: "/n", value: 1.0 } }]);
    await browser.apply(todo.id, [{ type: "UPDATE_TODO", input: { id: "a", title: "browser", done: true } }]);
    await browser.apply(todo.id, [{ type: "ADD_TODO", input: { id: "b", title: "from the browser" } }]);

    const rustReport = await rustSync(rust.dir);
    const browserReport = await browser.sync();
    const rustReport2 = await rustSync(rust.dir);
    await browser.sync();

    for (const id of [doc.id, todo.id]) {
      const served = await api(server, `/v1/documents/${id}`);
      const mine = await browser.get(id);
      const theirs = await rustDoc(rust.dir, id);
      assert.equal(mine.stateHash, served.stateHash, `browser = server for ${id}`);
      assert.equal(theirs.stateHash, served.stateHash, `rust = server for ${id}`);
      assert.deepEqual(mine.state.global, served.state.global);
    }
    const state = (await browser.get(doc.id)).state.global;
    assert.equal(state.list.length, 0, "two removals of three succeeded");

    // The refused removal is kept and reported on every side.
    const serverConflicts = (await api(server, `/v1/documents/${doc.id}/conflicts`)).conflicts;
    const mine = await browser.conflicts(doc.id);
    assert.equal(serverConflicts.length, 1);
    assert.equal(mine.length, 1);
    assert.equal(mine[0].actionId, serverConflicts[0].actionId);
    assert.match(mine[0].reason, /^INDEX_OUT_OF_BOUNDS/);
    const rustLog = JSON.parse(await folio(["doc", "log", doc.id, "--json", "--data-dir", rust.dir]));
    const rustOps = Array.isArray(rustLog) ? rustLog : rustLog.operations;
    assert.ok(rustOps.some((op) => op.action.id === mine[0].actionId && op.error), "the Rust replica keeps it, marked");
    const reported = [...rustReport.conflicts, ...rustReport2.conflicts, ...browserReport.conflicts].map((c) => c.actionId);
    assert.ok(reported.includes(mine[0].actionId), "a sync round reported it");
    assert.ok(browser.status.conflicts >= 0);
  } finally {
    await browser.close();
    rust.remove();
  }
});

test("two browsers converge through the server, and subscribe sees remote changes", async () => {
  const a = await open(new IDBFactory(), "a");
  const b = await open(new IDBFactory(), "b");
  try {
    const doc = await a.create("folio/todo-list", "Shared");
    await a.sync();
    await b.sync();
    const seen = [];
    const off = b.subscribe(doc.id, (d) => seen.push(d.header.revision.global));
    await a.apply(doc.id, [{ type: "ADD_TODO", input: { id: "1", title: "a1" } }]);
    await b.apply(doc.id, [{ type: "ADD_TODO", input: { id: "2", title: "b1" } }]);
    await a.sync();
    await b.sync();
    await a.sync();
    const [da, db] = [await a.get(doc.id), await b.get(doc.id)];
    assert.equal(da.stateHash, db.stateHash);
    assert.deepEqual(Object.keys(da.state.global.items).sort(), ["1", "2"]);
    assert.ok(seen.length >= 2, "subscriber saw its own and the remote change");
    off();
  } finally {
    await a.close();
    await b.close();
  }
});

test("keyframes: a long document opens from its latest keyframe, and a rebase deep below it still merges", async () => {
  const idbA = new IDBFactory();
  const a = await open(idbA, "long-a");
  const b = await open(new IDBFactory(), "long-b");
  try {
    const doc = await a.create("folio/todo-list", "Long");
    await a.sync();
    await b.sync();
    // B acts first (its clock is earlier) but syncs last: its action sorts near the start of A's long history.
    await b.apply(doc.id, [{ type: "ADD_TODO", input: { id: "early", title: "from b" } }]);
    for (let i = 0; i < 600; i += 50) {
      await a.apply(doc.id, Array.from({ length: 50 }, (_, k) => ({ type: "ADD_TODO", input: { id: `a${(i + k) % 40}`, title: `t${i + k}` } })));
    }
    await a.close();
    const keyframes = await new Promise((resolve, reject) => {
      const req = idbA.open("folio:long-a");
      req.onsuccess = () => {
        const db = req.result;
        const all = db.transaction("keyframes").objectStore("keyframes").getAllKeys();
        all.onsuccess = () => {
          db.close();
          resolve(all.result.map((k) => k[1]));
        };
        all.onerror = () => reject(all.error);
      };
      req.onerror = () => reject(req.error);
    });
    assert.deepEqual(keyframes, [250, 500]);

    const a2 = await open(idbA, "long-a", { compress: false });
    const before = await a2.get(doc.id);
    assert.equal(before.header.revision.global, 600);
    await b.sync();
    await a2.sync(); // pulls B's early action: a rebase over ~600 operations, below both keyframes
    await b.sync();
    const [da, db, served] = [await a2.get(doc.id), await b.get(doc.id), await api(server, `/v1/documents/${doc.id}`)];
    assert.equal(da.stateHash, served.stateHash);
    assert.equal(db.stateHash, served.stateHash);
    assert.ok(da.state.global.items.early);
    await a2.close();
    // Reopened after the rebase: from the keyframe stored after it, the same document.
    const a3 = await open(idbA, "long-a");
    assert.equal((await a3.get(doc.id)).stateHash, served.stateHash);
    await a3.close();
  } finally {
    await b.close();
  }
});

test("local scope stays here; document scope renames and deletes, everywhere", async () => {
  const a = await open(new IDBFactory(), "scopes-a");
  const b = await open(new IDBFactory(), "scopes-b");
  try {
    const doc = await a.create("folio/todo-list", "Before");
    await a.apply(doc.id, [{ type: "SET", input: { path: "/draft", value: "mine" }, scope: "local" }]);
    assert.equal(a.status.pending, 1, "a local action is never pushed");
    await a.apply(doc.id, [{ type: "SET_NAME", input: { name: "After" }, scope: "document" }]);
    await assert.rejects(a.apply(doc.id, [{ type: "SET_NAME", input: {}, scope: "global" }]), { code: "UNKNOWN_ACTION" });
    await assert.rejects(
      a.apply(doc.id, [{ type: "ADD_TODO", input: { id: "x", title: "t" } }, { type: "SET_NAME", input: { name: "n" }, scope: "document" }]),
      { code: "INVALID_REQUEST" },
    );
    await a.sync();
    await b.sync();
    const seen = await b.get(doc.id);
    assert.equal(seen.header.name, "After");
    assert.deepEqual(seen.state.local, {});
    assert.deepEqual((await a.get(doc.id)).state.local, { draft: "mine" });
    assert.equal((await api(server, `/v1/documents/${doc.id}`)).header.name, "After");
    await b.apply(doc.id, [{ type: "DELETE_DOCUMENT", input: {}, scope: "document" }]);
    await assert.rejects(b.apply(doc.id, [{ type: "ADD_TODO", input: { id: "x", title: "t" } }]), { code: "DOCUMENT_DELETED" });
    await b.sync();
    await a.sync();
    assert.equal((await a.get(doc.id)).header.deleted, true);
    assert.ok(!(await a.list()).some((h) => h.id === doc.id), "deleted documents are not listed");
    assert.ok((await a.list({ includeDeleted: true })).some((h) => h.id === doc.id && h.deleted));
    assert.ok((await a.list({ type: "folio/json" })).every((h) => h.documentType === "folio/json"));
    assert.equal(await a.get("0190c5a0-0000-7000-8000-000000000000"), null, "an unknown document is null");
  } finally {
    await a.close();
    await b.close();
  }
});

/** Every record of every object store of `folio:<name>`. */
/** Writes `rows` (store name → records) into a new database `folio:<name>` of an older `version`, with the stores
 * every version has had: how an earlier client left it. */
function oldDatabase(idb, name, version, rows) {
  const stores = ["ops", "keyframes", "docs", "outbox", "meta"];
  return new Promise((resolve, reject) => {
    const req = idb.open(`folio:${name}`, version);
    req.onupgradeneeded = () => {
      const db = req.result;
      db.createObjectStore("ops", { keyPath: ["u", "i"] });
      db.createObjectStore("keyframes", { keyPath: ["u", "rev"] });
      db.createObjectStore("docs", { keyPath: "k" });
      db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
      db.createObjectStore("meta", { keyPath: "k" });
    };
    req.onsuccess = () => {
      const db = req.result;
      const tx = db.transaction(stores, "readwrite");
      for (const store of stores) for (const r of rows[store] ?? []) tx.objectStore(store).put(r);
      tx.oncomplete = () => (db.close(), resolve());
      tx.onerror = () => reject(tx.error);
    };
    req.onerror = () => reject(req.error);
  });
}

async function dump(idb, name) {
  const db = await new Promise((resolve, reject) => {
    const req = idb.open(`folio:${name}`);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const out = { version: db.version };
  for (const store of db.objectStoreNames) {
    out[store] = await new Promise((resolve, reject) => {
      const req = db.transaction(store).objectStore(store).getAll();
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  db.close();
  return out;
}

test("pulled operations are stored as one block of lines per unit; a version 1 database opens and reads", async () => {
  const idb = new IDBFactory();
  const a = await open(idb, "blocks-a");
  const doc = await a.create("folio/todo-list", "Blocks");
  for (let i = 0; i < 3; i++) await a.apply(doc.id, [{ type: "ADD_TODO", input: { id: `t${i}`, title: `todo ${i}` } }]);
  await a.apply(doc.id, [1, 2, 3].map((k) => ({ type: "ADD_TODO", input: { id: `m${k}`, title: `many ${k}` } })));
  await a.sync();
  const expected = await a.get(doc.id);
  await a.close();

  // A fresh replica pulls them: its global log is one block record `{u, i, n, t}`, and reads back after a reopen.
  const b = await open(idb, "blocks-b");
  const report = await b.sync();
  assert.ok(report.pulled >= 7, `pulled ${report.pulled}`); // the server is shared with the other tests
  await b.close();
  const stored = await dump(idb, "blocks-b");
  assert.equal(stored.version, 3);
  const blocks = stored.ops.filter((r) => typeof r.t === "string");
  assert.ok(blocks.length >= 1, JSON.stringify(stored.ops.map((r) => Object.keys(r))));
  for (const r of blocks) assert.equal(r.t.split("\n").length, r.n);
  const b2 = await open(idb, "blocks-b");
  assert.deepEqual(await b2.get(doc.id), expected);
  await b2.close();

  // A database version 1 made (its stores, records of one text or an array of texts) opens as version 3.
  const old = await dump(idb, "blocks-a");
  await oldDatabase(idb, "blocks-v1", 1, old);
  assert.ok(old.ops.some((r) => Array.isArray(r.js)) && old.ops.some((r) => typeof r.j === "string"));
  const v1 = await open(idb, "blocks-v1");
  assert.deepEqual(await v1.get(doc.id), expected);
  await v1.close();
  assert.equal((await dump(idb, "blocks-v1")).version, 3);
});

test("an apply stores no meta row and no header whose revision alone moved; count and headers read back without close", async () => {
  const idb = new IDBFactory();
  const a = await open(idb, "lean");
  const doc = await a.create("folio/todo-list", "Lean");
  for (let i = 0; i < 3; i++) await a.apply(doc.id, [{ type: "ADD_TODO", input: { id: `t${i}`, title: `todo ${i}` } }]);
  assert.equal(a.status.pending, 4);
  let stored = await dump(idb, "lean");
  assert.equal(stored.version, 3);
  assert.ok(!stored.meta.some((r) => r.k === "outbox/count"), "only deletions write the count to meta");
  assert.deepEqual(stored.outbox.map((r) => r.n), [1, 2, 3, 4], "each outbox row carries the count after it");
  assert.ok(stored.outbox.every((r, k) => k === 0 || r.at > stored.outbox[k - 1].at));
  const [header] = stored.docs;
  assert.equal(header.lag, true, "the first apply of the session stores the header marked lag");
  assert.equal(JSON.parse(header.header).revision.global, 1, "later applies did not store it");
  assert.equal((await a.list())[0].revision.global, 3, "list takes a lagging header from the core");
  await a.apply(doc.id, [{ type: "SET_NAME", input: { name: "Renamed" }, scope: "document" }]);
  stored = await dump(idb, "lean");
  assert.equal(JSON.parse(stored.docs[0].header).name, "Renamed", "a header that changed more than its revision is stored");

  // Another replica on the database while the first is still open (as after a crash: no close stored anything).
  const b = await open(idb, "lean");
  assert.equal(b.status.pending, 5, "the count read back from the last outbox row (the rename is replicated too)");
  const [listed] = await b.list();
  assert.equal(listed.revision.global, 3);
  assert.equal(listed.name, "Renamed");
  stored = await dump(idb, "lean");
  assert.equal(stored.docs[0].lag, undefined, "list stored the lagging header as it is");
  assert.equal(JSON.parse(stored.docs[0].header).revision.document, listed.revision.document);
  const highest = Math.max(...(await dump(idb, "lean")).outbox.map((r) => r.seq));
  await b.sync();
  assert.equal(b.status.pending, 0);
  stored = await dump(idb, "lean");
  const count = stored.meta.find((r) => r.k === "outbox/count");
  assert.equal(count?.v, "0", "a push's deletions write the count to meta");
  assert.equal(count?.through, highest, "with the highest row key deleted (opening looks above it)");
  await b.apply(doc.id, [{ type: "ADD_TODO", input: { id: "late", title: "late" } }]);
  await b.close();
  const c = await open(idb, "lean");
  assert.equal(c.status.pending, 1, "a row added after meta's count holds the count");
  assert.equal((await c.list()).find((h) => h.id === doc.id)?.revision.global, 4);
  await c.close();
  await a.close();
});

test("a version 2 database (the count in meta only, rows without it) opens with its count", async () => {
  const idb = new IDBFactory();
  const a = await open(idb, "count-v2");
  const doc = await a.create("folio/todo-list", "Old");
  await a.apply(doc.id, [{ type: "ADD_TODO", input: { id: "x", title: "x" } }]);
  await a.close();
  const old = await dump(idb, "count-v2");
  // Version 2's outbox rows carry no count; its meta row holds it.
  const outbox = old.outbox.map(({ n: _n, at: _at, ...row }) => row);
  await oldDatabase(idb, "count-v2b", 2, { ...old, outbox, meta: [...old.meta, { k: "outbox/count", v: "2" }] });
  const b = await open(idb, "count-v2b");
  assert.equal(b.status.pending, 2);
  await b.apply(doc.id, [{ type: "ADD_TODO", input: { id: "y", title: "y" } }]);
  await b.close();
  const c = await open(idb, "count-v2b");
  assert.equal(c.status.pending, 3);
  assert.equal((await dump(idb, "count-v2b")).version, 3);
  await c.close();
});
