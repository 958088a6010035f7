// Signed actions from the JavaScript replica (fake-indexeddb in Node, WebCrypto Ed25519, the WebAssembly core)
// against a real `folio serve --require-signatures`: its replica id derives from its key, the server takes its
// signed pushes and refuses the same action tampered with or stripped of its signature.
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Folio } from "../dist/folio-client.js";
import { WASM, api, startServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer(["--require-signatures"]);
});
after(async () => {
  await server?.stop();
});

const open = (factory, name) =>
  Folio.open({ url: server.url, token: server.token, name, indexedDB: factory, wasm: WASM, autoSync: false });

test("the replica signs its actions; the server takes them and refuses them tampered with", async () => {
  const idb = new IDBFactory();
  const f = await open(idb, "signer");
  assert.match(f.replicaId, /^[0-9a-f]{16}$/);
  const header = await f.create("folio/todo-list", "Signed");
  await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "milk", title: "Buy milk" } }]);
  const report = await f.sync();
  assert.equal(report.pushed, 2);
  assert.equal(report.pushedNew, 2);
  assert.deepEqual(report.conflicts, []);
  const ops = (await api(server, `/v1/documents/${header.id}/operations?scope=global`)).operations;
  assert.equal(ops.length, 1);
  const action = ops[0].action;
  assert.equal(action.replica, f.replicaId);
  assert.match(action.signer, /^[A-Za-z0-9_-]{43}$/);
  // The create and the add, made within the signing's wait, share one batch signature: the 64 bytes of the
  // signature (86 characters) and then each action's place in the tree of two (2 + 2 bytes and one sibling hash).
  const created = (await api(server, `/v1/documents/${header.id}/operations?scope=document`)).operations[0].action;
  for (const a of [action, created]) assert.match(a.signature, /^[A-Za-z0-9_-]{134}$/);
  assert.equal(action.signature.slice(0, 86), created.signature.slice(0, 86));
  assert.notEqual(action.signature, created.signature);

  // The same key and id after a reopen.
  await f.close();
  const again = await open(idb, "signer");
  assert.equal(again.replicaId, action.replica);

  // The browser's signed action, tampered with: refused by its signature, not stored.
  const entry = (a) => ({ documentId: header.id, scope: "global", branch: "main", action: a });
  const tampered = { ...action, id: crypto.randomUUID(), input: { id: "milk", title: "Buy poison" } };
  const stolen = { ...action, id: crypto.randomUUID(), signer: undefined, signature: undefined };
  // The add's signature with its sibling hash changed (one character of the proof's last hash).
  const last = action.signature.length - 10;
  const moved = {
    ...action,
    signature: action.signature.slice(0, last) + (action.signature[last] === "A" ? "B" : "A") + action.signature.slice(last + 1),
  };
  // The create's signature and proof on the add.
  const swapped = { ...action, signature: created.signature };
  const answer = await api(server, "/v1/sync/push", {
    method: "POST",
    body: JSON.stringify({ replica: action.replica, entries: [entry(tampered), entry(stolen), entry(moved), entry(swapped)] }),
  });
  assert.equal(answer.new, 0);
  assert.deepEqual(
    answer.rejected.map((r) => r.reason.split(":")[0]),
    ["BAD_SIGNATURE", "SIGNATURE_REQUIRED", "BAD_SIGNATURE", "BAD_SIGNATURE"],
  );
  assert.equal((await api(server, `/v1/documents/${header.id}/operations?scope=global`)).operations.length, 1);
  await again.close();
});

test("actions are signed once, soon after they are made; a row stored unsigned is signed when it leaves", async () => {
  const idb = new IDBFactory();
  const f = await open(idb, "signed-when-made");
  const header = await f.create("folio/todo-list", "Made");
  await f.apply(header.id, [{ type: "ADD_TODO", input: { id: "a", title: "A" } }]);
  await f.close();
  // The outbox rows as stored: signed already, each entry's signature valid for its content.
  const rows = await outboxRows(idb, "signed-when-made");
  assert.equal(rows.length, 2);
  for (const row of rows) {
    assert.equal(row.s, true);
    const action = JSON.parse(row.j).action;
    assert.match(action.signature, /^[A-Za-z0-9_-]{134}$/);
  }
  // Signed together: one signature (the first 86 characters), two places in its tree.
  const [one, two] = rows.map((r) => JSON.parse(r.j).action.signature);
  assert.equal(one.slice(0, 86), two.slice(0, 86));
  // A row of an earlier version (no `s`, no signature): stripped here by hand, signed at the push.
  await rewriteOutbox(idb, "signed-when-made", (row) => {
    const entry = JSON.parse(row.j);
    delete entry.action.signer;
    delete entry.action.signature;
    const { s, ...rest } = row;
    return { ...rest, j: JSON.stringify(entry) };
  });
  assert.ok((await outboxRows(idb, "signed-when-made")).every((r) => r.s === undefined && !r.j.includes('"signature"')));
  const again = await open(idb, "signed-when-made");
  const report = await again.sync();
  assert.equal(report.pushedNew, 2);
  assert.deepEqual(report.conflicts, []);
  const ops = (await api(server, `/v1/documents/${header.id}/operations?scope=global`)).operations;
  assert.equal(ops.length, 1);
  // Signed at the push, the two together.
  assert.match(ops[0].action.signature, /^[A-Za-z0-9_-]{134}$/);
  await again.close();
});

async function database(idb, name) {
  return new Promise((resolve, reject) => {
    const req = idb.open(`folio:${name}`);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function outboxRows(idb, name) {
  const db = await database(idb, name);
  const rows = await new Promise((resolve, reject) => {
    const req = db.transaction("outbox").objectStore("outbox").getAll();
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  db.close();
  return rows;
}

async function rewriteOutbox(idb, name, change) {
  const db = await database(idb, name);
  const tx = db.transaction("outbox", "readwrite");
  const store = tx.objectStore("outbox");
  for (const row of await new Promise((resolve) => {
    const req = store.getAll();
    req.onsuccess = () => resolve(req.result);
  })) {
    store.put(change(row));
  }
  await new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
  });
  db.close();
}
