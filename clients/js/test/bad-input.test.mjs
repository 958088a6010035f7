// Bad input: a wrong or stale token, a server answering 500 or vanishing mid-push, IndexedDB refusing to store
// (quota), a corrupted record. Each gives a named error, loses nothing, and sync resumes.
import "fake-indexeddb/auto";
import { IDBFactory, IDBObjectStore } from "fake-indexeddb";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Folio } from "../dist/folio-client.js";
import { WASM, api, sleep, startProxy, startServer } from "./helpers.mjs";

let server;
let proxy;
before(async () => {
  server = await startServer();
  proxy = await startProxy(server.url);
});
after(async () => {
  await proxy?.stop();
  await server?.stop();
});

const open = (factory, name, extra = {}) =>
  Folio.open({ url: proxy.url, token: server.token, name, indexedDB: factory, wasm: WASM, autoSync: false, ...extra });

const globalLog = async (id) => (await api(server, `/v1/documents/${id}/operations?scope=global`)).operations ?? [];

test("a wrong token: UNAUTHORIZED, sync stops, nothing is lost, a good token resumes", async () => {
  const idb = new IDBFactory();
  const bad = await open(idb, "token", { token: "not-a-token", autoSync: true });
  const doc = await bad.create("folio/todo-list", "Offline until fixed");
  await bad.apply(doc.id, [{ type: "ADD_TODO", input: { id: "a", title: "kept" } }]);
  for (let i = 0; i < 50 && bad.status.error === null; i++) await sleep(20);
  assert.equal(bad.status.error?.code, "UNAUTHORIZED");
  const requests = proxy.counts.requests;
  await sleep(1500);
  assert.equal(proxy.counts.requests, requests, "sync stopped: no retries with a refused token");
  await assert.rejects(bad.sync(), { code: "UNAUTHORIZED" });
  assert.equal(bad.status.pending, 2);
  await bad.close();

  const good = await open(idb, "token");
  assert.equal(good.status.pending, 2);
  await good.sync();
  assert.equal(good.status.error, null);
  assert.equal(good.status.pending, 0);
  assert.equal((await api(server, `/v1/documents/${doc.id}`)).stateHash, (await good.get(doc.id)).stateHash);
  await good.close();
});

test("the server answers 500, then vanishes after taking a push: named errors, no loss, no duplicate", async () => {
  const f = await open(new IDBFactory(), "flaky");
  const doc = await f.create("folio/todo-list", "Flaky");
  await f.sync();
  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "a", title: "one" } }]);

  proxy.mode = (req) => (req.url.startsWith("/v1/sync/push") ? "500" : "pass");
  await assert.rejects(f.sync(), (e) => e.code === "SERVER_ERROR" && e.status === 500);
  assert.equal(f.status.online, false);
  assert.equal(f.status.error.code, "SERVER_ERROR");
  assert.equal(f.status.pending, 1);

  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "b", title: "two" } }]);
  proxy.mode = (req) => (req.url.startsWith("/v1/sync/push") ? "drop-after" : "pass");
  await assert.rejects(f.sync(), { code: "OFFLINE" });
  assert.equal(f.status.pending, 2, "not acknowledged: still in the outbox");

  proxy.mode = "drop";
  await assert.rejects(f.sync(), { code: "OFFLINE" });

  proxy.mode = "pass";
  const report = await f.sync();
  assert.equal(report.pushed, 2);
  assert.equal(f.status.pending, 0);
  assert.equal(f.status.error, null);
  assert.equal(f.status.online, true);
  const served = await api(server, `/v1/documents/${doc.id}`);
  assert.equal(served.stateHash, (await f.get(doc.id)).stateHash);
  assert.deepEqual(Object.keys(served.state.global.items).sort(), ["a", "b"]);
  assert.equal(served.header.revision.global, 2, "each action once on the server");
  await f.close();
});

function failAdds(storeName) {
  const original = IDBObjectStore.prototype.add;
  IDBObjectStore.prototype.add = function (...args) {
    if (this.name === storeName) throw new DOMException("the quota is exceeded", "QuotaExceededError");
    return original.apply(this, args);
  };
  return () => {
    IDBObjectStore.prototype.add = original;
  };
}

test("IndexedDB refuses to store: QUOTA_EXCEEDED, the document is as before, sync resumes", async () => {
  const f = await open(new IDBFactory(), "quota");
  const doc = await f.create("folio/todo-list", "Full disk");
  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "a", title: "stored" } }]);
  const before = await f.get(doc.id);

  let restore = failAdds("ops");
  try {
    await assert.rejects(f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "b", title: "refused" } }]), {
      code: "QUOTA_EXCEEDED",
    });
  } finally {
    restore();
  }
  assert.deepEqual(await f.get(doc.id), before, "nothing half-applied");
  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "c", title: "stored again" } }]);
  await f.sync();

  // A pull that cannot be stored: the cursor does not move, the next round takes it again.
  const other = await open(new IDBFactory(), "quota-other");
  await other.sync();
  await other.apply(doc.id, [{ type: "ADD_TODO", input: { id: "d", title: "from elsewhere" } }]);
  await other.sync();
  restore = failAdds("ops");
  try {
    await assert.rejects(f.sync(), { code: "QUOTA_EXCEEDED" });
    assert.equal(f.status.error.code, "QUOTA_EXCEEDED");
  } finally {
    restore();
  }
  await f.sync();
  assert.equal((await f.get(doc.id)).stateHash, (await other.get(doc.id)).stateHash);
  assert.ok((await f.get(doc.id)).state.global.items.d);
  await other.close();
  await f.close();
});

test("a corrupted record: CORRUPT_RECORD for its document only, other documents sync, repair rebuilds it", async () => {
  const idb = new IDBFactory();
  const f = await open(idb, "corrupt");
  const doc = await f.create("folio/todo-list", "Will be damaged");
  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "a", title: "pushed" } }]);
  await f.sync();
  await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "b", title: "not pushed yet" } }]);
  const healthy = await f.create("folio/json", "Healthy");
  const expected = await f.get(doc.id);
  await f.close();

  // Change a stored operation's text behind the replica's back (its hash no longer matches).
  await new Promise((resolve, reject) => {
    const req = idb.open("folio:corrupt");
    req.onsuccess = () => {
      const db = req.result;
      const tx = db.transaction("ops", "readwrite");
      const store = tx.objectStore("ops");
      const get = store.get([`${doc.id}/global/main`, 0]);
      get.onsuccess = () => {
        const rec = get.result;
        rec.j = rec.j.replace("pushed", "tampered");
        store.put(rec);
      };
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => reject(tx.error);
    };
    req.onerror = () => reject(req.error);
  });

  const g = await open(idb, "corrupt");
  await assert.rejects(g.get(doc.id), (e) => e.code === "CORRUPT_RECORD" && e.message.includes(doc.id));
  await g.apply(healthy.id, [{ type: "SET", input: { path: "/ok", value: true } }]);
  await assert.rejects(g.apply(doc.id, [{ type: "ADD_TODO", input: { id: "c", title: "x" } }]), {
    code: "CORRUPT_RECORD",
  });
  await g.sync(); // the outbox (the damaged document's own unsent action included) still goes out
  assert.equal((await api(server, `/v1/documents/${healthy.id}`)).state.global.ok, true);
  await g.repair(doc.id);
  const repaired = await g.get(doc.id);
  assert.deepEqual(repaired.state.global, expected.state.global, "nothing lost");
  assert.equal(repaired.stateHash, (await api(server, `/v1/documents/${doc.id}`)).stateHash);
  await g.close();
});

test("a read token: changes come in, own actions wait (FORBIDDEN), nothing is lost", async () => {
  const { folio } = await import("./helpers.mjs");
  const readToken = (await folio(["token", "create", "--role", "read", "--data-dir", server.dataDir])).trim().split(/\s+/).pop();
  const writer = await open(new IDBFactory(), "writer");
  const idb = new IDBFactory();
  const reader = await open(idb, "reader", { token: readToken });
  const doc = await writer.create("folio/todo-list", "Shared");
  await writer.sync();
  await reader.sync();
  await reader.apply(doc.id, [{ type: "ADD_TODO", input: { id: "mine", title: "waits" } }]);
  await writer.apply(doc.id, [{ type: "ADD_TODO", input: { id: "theirs", title: "arrives" } }]);
  await writer.sync();
  const report = await reader.sync();
  assert.equal(report.pushed, 0);
  assert.equal(reader.status.error?.code, "FORBIDDEN");
  assert.equal(reader.status.pending, 1);
  const mine = await reader.get(doc.id);
  assert.ok(mine.state.global.items.theirs && mine.state.global.items.mine);
  await reader.close();
  // The same replica with a write token pushes what waited.
  const again = await open(idb, "reader");
  await again.sync();
  assert.equal(again.status.pending, 0);
  await writer.sync();
  assert.equal((await writer.get(doc.id)).stateHash, (await again.get(doc.id)).stateHash);
  await again.close();
  await writer.close();
});
