// Signed actions in real headless Chromium: the replica's Ed25519 key is a non-extractable WebCrypto key kept in
// IndexedDB, its replica id derives from it, and a `folio serve --require-signatures` takes the actions it signs
// and refuses one of them tampered with.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { api, startServer } from "../helpers.mjs";
import { launch } from "./chromium.mjs";

// https: WebCrypto exists only in secure contexts (a page on plain http other than localhost has no crypto.subtle,
// and its replica stays unsigned).
const APP = "https://folio-signed.test";

let server;
let browser;
before(async () => {
  server = await startServer(["--cors-origin", APP, "--require-signatures"]);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

test("Chromium signs with a non-extractable key; the server requires and checks the signatures", async () => {
  const page = await browser.open(APP);
  const options = { url: server.url, token: server.token, name: "signed", shared: "off", autoSync: false };
  const got = await page.evaluate(async (o) => {
    const f = await window.Folio.open(o);
    const doc = await f.create("folio/todo-list", "Signed in Chromium");
    await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "milk", title: "Buy milk" } }]);
    const report = await f.sync();
    // The key as IndexedDB keeps it: a CryptoKeyPair whose private half cannot be exported.
    const db = await new Promise((resolve, reject) => {
      const r = indexedDB.open("folio:signed");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const row = await new Promise((resolve, reject) => {
      const r = db.transaction(["meta"]).objectStore("meta").get("identity/ed25519");
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    let exported = "exported";
    try {
      await crypto.subtle.exportKey("pkcs8", row.keys.privateKey);
    } catch (e) {
      exported = e.name;
    }
    db.close();
    return {
      id: doc.id,
      replica: f.replicaId,
      pushed: report.pushed,
      conflicts: report.conflicts,
      algorithm: row.keys.privateKey.algorithm.name,
      extractable: row.keys.privateKey.extractable,
      exported,
    };
  }, options);
  assert.equal(got.algorithm, "Ed25519");
  assert.equal(got.extractable, false);
  assert.equal(got.exported, "InvalidAccessError");
  assert.match(got.replica, /^[0-9a-f]{16}$/);
  assert.equal(got.pushed, 2);
  assert.deepEqual(got.conflicts, []);

  const ops = (await api(server, `/v1/documents/${got.id}/operations?scope=global`)).operations;
  assert.equal(ops.length, 1);
  const action = ops[0].action;
  assert.equal(action.replica, got.replica);
  assert.match(action.signature, /^[A-Za-z0-9_-]{86}$/);
  const tampered = { ...action, id: crypto.randomUUID(), input: { id: "milk", title: "tampered" } };
  const answer = await api(server, "/v1/sync/push", {
    method: "POST",
    body: JSON.stringify({
      replica: action.replica,
      entries: [{ documentId: got.id, scope: "global", branch: "main", action: tampered }],
    }),
  });
  assert.equal(answer.new, 0);
  assert.equal(answer.rejected.length, 1);
  assert.match(answer.rejected[0].reason, /^BAD_SIGNATURE: /);
  const served = await api(server, `/v1/documents/${got.id}`);
  assert.equal(served.state.global.items.milk.title, "Buy milk");
});
