// A call the tabs' host makes with a call id stores its answer with its change: made again (`retry`, after the
// leader tab died before answering), it answers the stored result and changes nothing; old answers are pruned.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IDBFactory } from "fake-indexeddb";
import { FolioReplica } from "../dist/folio-client.js";
import { WASM } from "./helpers.mjs";

test("apply and create with a call id happen once, however often they are retried", async () => {
  const indexedDB = new IDBFactory();
  const f = await FolioReplica.open({ name: "calls", indexedDB, wasm: WASM });
  const header = await f.create("folio/todo-list", "Once", { callId: "tab:1" });
  const again = await f.create("folio/todo-list", "Once", { callId: "tab:1", retry: true });
  assert.equal(again.id, header.id, "the retried create answers the first one's document");
  assert.equal((await f.list()).length, 1);

  const first = await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "a", title: "A" } }], { callId: "tab:2" });
  const retried = await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "a", title: "A" } }], { callId: "tab:2", retry: true });
  assert.deepEqual(retried, first);
  const doc = await f.get(header.id);
  assert.equal(doc.header.revision.global, first.revision, "applied once");
  assert.equal(f.status.pending, 2, "one create and one action wait to be pushed");

  // A retry of a call never stored (the leader died before committing it) is made.
  const late = await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "b", title: "B" } }], { callId: "tab:3", retry: true });
  assert.equal(late.revision, first.revision + 1);
  await f.close();

  // Answers older than an hour are dropped when the replica opens.
  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open("folio:calls");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  await new Promise((resolve) => {
    const tx = db.transaction(["meta"], "readwrite");
    tx.objectStore("meta").put({ k: "call/old:1", v: `${Date.now() - 2 * 3_600_000}|{}` });
    tx.oncomplete = resolve;
  });
  db.close();
  const g = await FolioReplica.open({ name: "calls", indexedDB, wasm: WASM });
  const keys = await new Promise((resolve) => {
    const req = indexedDB.open("folio:calls");
    req.onsuccess = () => {
      const r = req.result.transaction(["meta"]).objectStore("meta").getAllKeys();
      r.onsuccess = () => resolve(r.result);
    };
  });
  assert.ok(!keys.includes("call/old:1"), "the old answer is gone");
  assert.ok(keys.includes("call/tab:2"), "recent answers stay");
  await g.close();
});
