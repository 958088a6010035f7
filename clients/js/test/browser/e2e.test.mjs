// End to end in real headless Chromium against a real `folio serve` (SQLite): create and apply offline, reload the
// page, the pending actions are still there; online again, they reach the server; a Rust replica (`folio sync`)
// makes concurrent conflicting edits; after sync the browser, the Rust replica and the server have equal state
// hashes and the refused action is reported on every side.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { api, folio, startServer, tempDir } from "../helpers.mjs";
import { launch } from "./chromium.mjs";

// The app's origin: another origin than the server's, so every call is cross-origin (CORS, the WebSocket token in
// the query). The page and the bundle are served by request routing, so a reload works offline.
const APP = "http://folio-app.test";

let server;
let browser;
before(async () => {
  server = await startServer(["--cors-origin", APP]);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

const rustSync = async (dir) =>
  JSON.parse(await folio(["sync", "--remote", server.url, "--token", server.token, "--data-dir", dir, "--json"])).report;
const rustDoc = async (dir, id) => JSON.parse(await folio(["doc", "get", id, "--json", "--data-dir", dir]));

async function openFolio(page, options) {
  return page.evaluate(async (o) => {
    if (!window.pulls) {
      window.pulls = 0;
      const f0 = window.fetch.bind(window);
      window.fetch = (input, init) => {
        if (String(input).includes("/v1/sync/pull")) window.pulls++;
        return f0(input, init);
      };
    }
    window.folio = await window.Folio.open(o);
    window.statuses = [];
    window.folio.on("status", (s) => window.statuses.push(s));
    return window.folio.replicaId;
  }, options);
}

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: 15_000, polling: 50 });
  } catch (e) {
    const status = await page.evaluate(() => window.folio.status);
    throw new Error(`${what}: ${e.message} (status ${JSON.stringify(status)})`);
  }
}

test("offline in Chromium, reload, online: browser, Rust replica and server converge, conflicts reported", async () => {
  const rust = tempDir("folio-rust-");
  const { page, context } = browser;
  await browser.open(APP);
  const options = { url: server.url, token: server.token, name: "e2e", shared: "off" }; // the replica itself (tabs: test/browser/tabs.test.mjs)
  const replica = await openFolio(page, options);
  assert.match(replica, /^[0-9a-f]{16}$/);

  const ids = await page.evaluate(async () => {
    const f = window.folio;
    const json = await f.create("folio/json", "Shared list");
    await f.apply(json.id, [{ type: "SET", input: { path: "/list", value: ["x", "y"] } }]);
    const todo = await f.create("folio/todo-list", "Groceries");
    await f.apply(todo.id, [{ type: "ADD_TODO", input: { id: "milk", title: "Buy milk" } }]);
    return { json: json.id, todo: todo.id };
  });
  await waitFor(page, () => window.folio.status.pending === 0 && window.folio.status.online, undefined, "first sync");
  await rustSync(rust.dir);
  assert.deepEqual((await rustDoc(rust.dir, ids.json)).state.global.list, ["x", "y"]);

  // Offline: work goes on, nothing reaches the server.
  await context.setOffline(true);
  const offline = await page.evaluate(async (ids) => {
    const f = window.folio;
    await f.apply(ids.json, [{ type: "REMOVE", input: { path: "/list", index: 0 } }]);
    await f.apply(ids.todo, [{ type: "UPDATE_TODO", input: { id: "milk", done: true } }]);
    await f.apply(ids.todo, [{ type: "ADD_TODO", input: { id: "bread", title: "Bread" } }]);
    const doc = await window.folio.create("folio/todo-list", "Made offline");
    await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: "x", title: "offline item" } }]);
    let error = null;
    try {
      await f.sync();
    } catch (e) {
      error = e.code;
    }
    return { pending: f.status.pending, error, made: doc.id, online: f.status.online };
  }, ids);
  assert.equal(offline.error, "OFFLINE");
  assert.equal(offline.online, false);
  assert.ok(offline.pending >= 4, `pending ${offline.pending}`);

  // Reload the page (still offline): the pending actions are in IndexedDB.
  await page.reload();
  await page.waitForFunction(() => window.ready === true);
  await openFolio(page, { ...options, autoSync: false });
  const reloaded = await page.evaluate(async (ids) => ({
    pending: window.folio.status.pending,
    list: (await window.folio.get(ids.json)).state.global.list,
    made: (await window.folio.list()).map((h) => h.name).sort(),
  }), ids);
  assert.equal(reloaded.pending, offline.pending, "pending actions survive the reload");
  assert.deepEqual(reloaded.list, ["y"]);
  assert.deepEqual(reloaded.made, ["Groceries", "Made offline", "Shared list"]);
  const before = await api(server, `/v1/documents/${ids.json}`);
  assert.deepEqual(before.state.global.list, ["x", "y"], "nothing reached the server while offline");

  // Meanwhile the Rust replica removes the same element, and edits the same item.
  await folio(["doc", "apply", ids.json, "REMOVE", '{"path":"/list","index":0}', "--data-dir", rust.dir]);
  await folio(["doc", "apply", ids.json, "REMOVE", '{"path":"/list","index":0}', "--data-dir", rust.dir]);
  await folio(["doc", "apply", ids.todo, "UPDATE_TODO", '{"id":"milk","title":"Oat milk"}', "--data-dir", rust.dir]);
  const rustFirst = await rustSync(rust.dir);

  // Online again: a new page load syncs by itself (a round, then live).
  await context.setOffline(false);
  await page.reload();
  await page.waitForFunction(() => window.ready === true);
  await openFolio(page, options);
  await waitFor(page, () => window.folio.status.pending === 0 && window.folio.status.online, undefined, "sync after reconnect");
  const rustSecond = await rustSync(rust.dir);
  // Live: the browser receives what the Rust replica pushes without asking (no pull request: the WebSocket).
  await waitFor(page, () => window.statuses.some((s) => s.online), undefined, "online");
  const pulls = await page.evaluate(() => window.pulls);
  await folio(["doc", "apply", ids.todo, "ADD_TODO", '{"id":"rust-live","title":"live"}', "--data-dir", rust.dir]);
  await rustSync(rust.dir);
  await waitFor(page, async (id) => !!(await window.folio.get(id)).state.global.items["rust-live"], ids.todo, "live delivery");
  assert.equal(await page.evaluate(() => window.pulls), pulls, "delivered over the live WebSocket");
  await rustSync(rust.dir);

  for (const id of [ids.json, ids.todo, offline.made]) {
    const served = await api(server, `/v1/documents/${id}`);
    const mine = await page.evaluate((id) => window.folio.get(id), id);
    const theirs = await rustDoc(rust.dir, id);
    assert.equal(mine.stateHash, served.stateHash, `browser = server on ${id}`);
    assert.equal(theirs.stateHash, served.stateHash, `Rust replica = server on ${id}`);
  }
  const served = await api(server, `/v1/documents/${ids.json}`);
  assert.deepEqual(served.state.global.list, [], "two of the three removals of element 0 succeed");

  // The refused removal (the last of three in the total order, with two elements) is reported on every side.
  const serverConflicts = (await api(server, `/v1/documents/${ids.json}/conflicts`)).conflicts;
  assert.equal(serverConflicts.length, 1);
  const refused = serverConflicts[0].actionId;
  const mine = await page.evaluate((id) => window.folio.conflicts(id), ids.json);
  assert.deepEqual(mine.map((c) => c.actionId), [refused]);
  const rustLog = JSON.parse(await folio(["doc", "log", ids.json, "--json", "--data-dir", rust.dir]));
  const rustOps = Array.isArray(rustLog) ? rustLog : rustLog.operations;
  assert.ok(rustOps.some((op) => op.action.id === refused && op.error), "the Rust replica keeps it, marked");
  const reportedToRust = [...rustFirst.conflicts, ...rustSecond.conflicts].some((c) => c.actionId === refused);
  const statusConflicts = await page.evaluate(() => Math.max(0, ...window.statuses.map((s) => s.conflicts)));
  assert.ok(reportedToRust || statusConflicts > 0, "a sync round reported it");
  assert.match(mine[0].reason, /^INDEX_OUT_OF_BOUNDS/);
  await page.evaluate(() => window.folio.close());
  rust.remove();
});
