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
  // The create and the add were signed together: one batch signature (86 characters) and the add's place in it.
  assert.match(action.signature, /^[A-Za-z0-9_-]{134}$/);
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

test("a pull's signatures are verified on two threads when there are many, with the same verdicts", async () => {
  const page = await browser.open(APP);
  const options = { url: server.url, token: server.token, name: "many-signed", shared: "off", autoSync: false };
  const got = await page.evaluate(async (o) => {
    // Counts the workers made in this page (the helper that verifies half of a large batch).
    const Native = window.Worker;
    window.workersMade = 0;
    window.Worker = class extends Native {
      constructor(...args) {
        super(...args);
        window.workersMade++;
      }
    };
    const f = await window.Folio.open(o);
    const doc = await f.create("folio/todo-list", "Many signed");
    const add = (k) => ({ type: "ADD_TODO", input: { id: `i${k}`, title: `item ${k}` } });
    // 300 actions each signed alone (each pushed at once: a push signs what waits), then 300 signed 32 to a batch
    // signature: over 256 distinct signatures (the first add shares the create's), enough for the split.
    let pushed = 0;
    for (let k = 0; k < 300; k++) {
      await f.apply(doc.id, [add(k)]);
      pushed += (await f.sync()).pushed;
    }
    for (let i = 300; i < 600; i += 100) {
      const batch = [];
      for (let k = i; k < i + 100; k++) batch.push(add(k));
      await f.apply(doc.id, batch);
    }
    const report = await f.sync();
    report.pushed += pushed;
    await f.close();
    const text = await (
      await fetch(`${o.url}/v1/sync/pull?after=0&limit=10000`, { headers: { authorization: `Bearer ${o.token}` } })
    ).text();
    const { verifySignatures } = await import("/app/dist/folio-client.js");
    const count = (v) => [0, 1, 2].map((n) => v.filter((x) => x === n).length);
    const whole = await verifySignatures(text);
    // One action's content changed in each half: its signature no longer covers it.
    const tampered = text.replace('"title":"item 10"', '"title":"item 1O"').replace('"title":"item 550"', '"title":"item 55O"');
    const bad = await verifySignatures(tampered);
    const entries = JSON.parse(text).entries;
    const at = (title) => entries.findIndex((e) => e.action.input?.title === title);
    // Without workers (as in a context that cannot make them), the same verdicts from this thread alone.
    const made = window.workersMade;
    return {
      pushed: report.pushed,
      entries: entries.length,
      signed: entries.filter((e) => e.action.signature).length,
      alone: entries.filter((e) => e.action.signature?.length === 86).length,
      batched: entries.filter((e) => e.action.signature?.length > 86).length,
      whole: count(whole),
      bad: count(bad),
      badAt: [bad[at("item 10")], bad[at("item 550")]],
      made,
    };
  }, options);
  assert.equal(got.pushed, 601);
  assert.ok(got.entries >= 601, `${got.entries} entries pulled`);
  assert.equal(got.signed, got.entries, "every entry pulled is signed");
  assert.ok(got.alone >= 256 && got.batched >= 300, `${got.alone} signed alone, ${got.batched} in batches`);
  assert.deepEqual(got.whole, [0, got.signed, 0], "every signature valid, none left to the core");
  assert.deepEqual(got.bad, [0, got.signed - 2, 2], "the two changed actions, and only they, are refused");
  assert.deepEqual(got.badAt, [2, 2]);
  assert.equal(got.made, 1, "one helper worker, made once");

  // A page where no worker can be made verifies everything itself, with the same verdicts.
  const alone = await browser.open(APP);
  const same = await alone.evaluate(async (o) => {
    delete window.Worker;
    window.Worker = undefined;
    const { verifySignatures, loadWasm } = await import("/app/dist/folio-client.js");
    await loadWasm();
    const text = await (
      await fetch(`${o.url}/v1/sync/pull?after=0&limit=10000`, { headers: { authorization: `Bearer ${o.token}` } })
    ).text();
    const tampered = text.replace('"title":"item 550"', '"title":"item 55O"');
    const v = await verifySignatures(tampered);
    return [0, 1, 2].map((n) => v.filter((x) => x === n).length);
  }, options);
  assert.deepEqual(same, [0, got.signed - 1, 1]);
});
