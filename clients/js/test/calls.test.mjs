// A call the tabs' host makes with a call id stores its answer with its change: made again (`retry`, after the
// leader tab died before answering), it answers the stored result and changes nothing; old answers are pruned.
import "fake-indexeddb/auto"; // IDBKeyRange, for loading a document back
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

test("a replica serving tabs tells subscribers after the call's answer, once per document, the latest", async () => {
  const indexedDB = new IDBFactory();
  const f = await FolioReplica.open({ name: "later", indexedDB, wasm: WASM });
  const header = await f.create("folio/todo-list", "Later");
  const near = [];
  f.subscribe(header.id, (d) => near.push(d.header.revision.global));
  // In the page (no host) the subscriber has heard the change when apply resolves.
  const r0 = await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "a", title: "A" } }]);
  assert.deepEqual(near, [r0.revision]);

  f.deferNotifications();
  const texts = [];
  f.subscribeText(header.id, (t) => texts.push(JSON.parse(t).header.revision.global));
  const text = await f.applyText(header.id, [{ type: "ADD_TODO", input: { id: "b", title: "B" } }]);
  const r1 = JSON.parse(text);
  assert.deepEqual(near, [r0.revision], "not told yet when the call answers");
  assert.deepEqual(texts, []);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(near, [r0.revision, r1.revision], "told in the next task");
  assert.deepEqual(texts, [r1.revision]);

  // The text is apply's answer: the operations as stored, the revision after them.
  assert.equal(r1.revision, r0.revision + 1);
  assert.equal(r1.operations.length, 1);
  assert.equal(r1.operations[0].index, r0.revision);
  assert.deepEqual(r1.operations[0].action.input, { id: "b", title: "B" });
  const doc = await f.get(header.id);
  assert.equal(doc.header.revision.global, r1.revision);

  // Two changes before that task: one notification with the latest document.
  const both = Promise.all([
    f.apply(header.id, [{ type: "ADD_TODO", input: { id: "c", title: "C" } }]),
    f.apply(header.id, [{ type: "ADD_TODO", input: { id: "d", title: "D" } }]),
  ]);
  const [, r3] = await both;
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(near[near.length - 1], r3.revision, "the latest document");
  assert.ok(near.length <= 4, `at most one notification per change: ${near}`);
  assert.equal(texts[texts.length - 1], r3.revision);

  // The core lets go of the document between the change and that task (as when a later call's trap replaces the
  // core): it is loaded again from IndexedDB and told all the same.
  const r4 = await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "e", title: "E" } }]);
  f.core.unload(header.id, "main");
  assert.equal(f.core.isLoaded(header.id, "main"), false);
  for (let i = 0; i < 100 && near[near.length - 1] !== r4.revision; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(near[near.length - 1], r4.revision, "told once loaded again");
  assert.equal(texts[texts.length - 1], r4.revision);
  assert.ok((await f.get(header.id)).state.global.items.e);
  await f.close();
});
