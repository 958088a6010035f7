// The replica's host (a SharedWorker, or a leader tab where there is none) in real headless Chromium, two tabs of a
// plain page loading clients/js/dist: a call's answer goes to the calling tab before the documents it changed go to
// the subscribed tabs (the caller's `apply` does not wait for its own or another tab's subscriber), and still every
// subscribed tab hears every change and every tab hears the status; `apply`'s answer, sent as the operations' texts,
// is what the replica answers in the page.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { appServer, browser } from "./web.mjs";

const dist = fileURLToPath(new URL("../../dist/", import.meta.url));
const site = mkdtempSync(join(tmpdir(), "folio-host-site-"));
let server;
before(async () => {
  for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(dist, file), join(site, file));
  writeFileSync(
    join(site, "index.html"),
    `<!doctype html><meta charset="utf-8"><script type="module">
    import * as client from "/folio-client.js";
    window.client = client;
    window.ready = true;
  </script>`,
  );
  server = await appServer({ staticDir: site });
});
after(async () => {
  await server?.close();
  rmSync(site, { recursive: true, force: true });
});

const APPLIES = 6;

async function twoTabs(noSharedWorker, shared) {
  const br = await browser({ noSharedWorker });
  const open = async () => {
    const page = await br.context.newPage();
    page.on("pageerror", (e) => console.log(`[pageerror] ${e.message}`));
    await page.goto(`${server.url}/`);
    await page.waitForFunction(() => window.ready === true);
    await page.evaluate(async (shared) => {
      window.log = [];
      window.statuses = [];
      window.f = await window.client.Folio.open({ name: "host-order", shared, autoSync: false, workerUrl: "/folio-worker.js" });
      window.f.on("status", (s) => window.statuses.push(s.pending));
    }, shared);
    return page;
  };
  const a = await open();
  const b = await open();
  return { br, a, b };
}

/** `a` calls, `b` listens; `follower`: the second tab opened calls (in leader mode, a follower). */
async function orderCase(noSharedWorker, shared, modes, follower = false) {
  const tabs = await twoTabs(noSharedWorker, shared);
  const { br } = tabs;
  const [a, b] = follower ? [tabs.b, tabs.a] : [tabs.a, tabs.b];
  try {
    assert.deepEqual([await a.evaluate(() => window.f.mode), await b.evaluate(() => window.f.mode)], modes);
    const id = await a.evaluate(async () => (await window.f.create("folio/todo-list", "Order")).id);
    for (const page of [a, b]) {
      await page.evaluate((id) => {
        window.f.subscribe(id, (doc) => window.log.push(`doc ${doc.header.revision.global}`));
      }, id);
    }
    // The subscriptions reach the host before the applies (a call answered after them went the same way).
    for (const page of [a, b]) await page.evaluate((id) => window.f.get(id), id);

    // Tab a applies, one call after the other, each time with nothing else under way (as a person types).
    const results = await a.evaluate(
      async ({ id, n }) => {
        const out = [];
        for (let i = 0; i < n; i++) {
          const r = await window.f.apply(id, [{ type: "ADD_TODO", input: { id: `t${i}`, title: `todo ${i}` } }]);
          window.log.push(`ret ${r.revision}`);
          out.push(r);
          await new Promise((done) => setTimeout(done, 30));
        }
        return out;
      },
      { id, n: APPLIES },
    );
    const last = results[results.length - 1].revision;
    for (const page of [a, b]) {
      await page.waitForFunction((last) => window.log.includes(`doc ${last}`), last, { timeout: 10_000 });
    }
    const logA = await a.evaluate(() => window.log);
    const logB = await b.evaluate(() => window.log);
    for (const r of results) {
      const ret = logA.indexOf(`ret ${r.revision}`);
      const doc = logA.indexOf(`doc ${r.revision}`);
      assert.ok(ret >= 0 && doc >= 0, `tab a resolved and heard revision ${r.revision}: ${logA.join(", ")}`);
      assert.ok(ret < doc, `apply resolved before its own subscriber heard revision ${r.revision}: ${logA.join(", ")}`);
      assert.ok(logB.includes(`doc ${r.revision}`), `the other tab heard revision ${r.revision}: ${logB.join(", ")}`);
    }

    // The answer is the replica's: the same revision and operations a `get` shows, shaped as in the page.
    const doc = await b.evaluate((id) => window.f.get(id), id);
    assert.equal(doc.header.revision.global, last);
    assert.equal(results.length, APPLIES);
    for (const [i, r] of results.entries()) {
      assert.equal(r.operations.length, 1);
      const op = r.operations[0];
      assert.equal(op.index, r.revision - 1);
      assert.equal(op.action.type, "ADD_TODO");
      assert.deepEqual(op.action.input, { id: `t${i}`, title: `todo ${i}` });
      assert.match(op.hash, /^[0-9a-f]{64}$/);
      assert.equal(op.error, null);
    }
    assert.ok(doc.state.global.items[`t${APPLIES - 1}`], "the last todo is in the document");

    // The status (the create and every action pending: no server) reaches both tabs.
    for (const page of [a, b]) {
      await page.waitForFunction((n) => window.f.status.pending === n && window.statuses.includes(n), APPLIES + 1, { timeout: 10_000 });
    }
    for (const page of [a, b]) await page.evaluate(() => window.f.close());
  } finally {
    await br.close();
  }
}

test("SharedWorker: apply's answer goes before the documents it changed; every tab still hears them and the status", async () => {
  await orderCase(false, "worker", ["worker", "worker"]);
});

test("leader tab: the same order for a follower's call (over the BroadcastChannel) and the leader's own", async () => {
  await orderCase(true, "leader", ["follower", "leader"], true);
  await orderCase(true, "leader", ["leader", "follower"]);
});
