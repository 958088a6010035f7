// Where an `apply`'s IndexedDB commit goes: the replica's own `commit` of what an apply stores, beside the same puts
// made by hand on the same database, and variants (fewer stores, fewer puts). Not a test; it reads private fields.
//
//   cd clients/js && FOLIO_BIN=/path/to/folio node bench/breakdown-commit.mjs
import { copyFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appServer, browser } from "../test/browser/web.mjs";
const DIST = process.env.FOLIO_BENCH_DIST || new URL("../dist", import.meta.url).pathname;
const site = mkdtempSync(join(tmpdir(), "folio-prof-site-"));
for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(DIST, file), join(site, file));
writeFileSync(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><script type="module">
  import * as client from "/folio-client.js"; window.client = client; window.Folio = client.Folio; window.ready = true;</script>`);
const server = await appServer({ staticDir: site });
const br = await browser();
try {
  const p = await br.context.newPage(); await p.goto(`${server.url}/`); await p.waitForFunction(() => window.ready === true);
  const r = await p.evaluate(async () => {
    const q = (xs) => { const s = [...xs].sort((a, b) => a - b); return [s[s.length >> 1], s[Math.floor(s.length * 0.9)]].map((x) => x.toFixed(2)).join("/"); };
    const f = await window.client.FolioReplica.open({ name: "commit", autoSync: false });
    const doc = await f.create("folio/todo-list", "commit");
    let captured = null;
    const c = f.store.commit.bind(f.store);
    f.store.commit = async (x) => { captured = x; return c(x); };
    for (let i = 0; i < 50; i++) await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `i${i}`, title: `title ${i}` } }]);
    f.store.commit = c;
    const db = f.store.db;
    const out = {};
    let next = 100000;
    const variants = {
      replicaCommit: async () => {
        const x = structuredClone(captured);
        x.ops = x.ops.map((o) => ({ ...o, u: "bench/global/main", i: next++ }));
        await f.store.commit(x);
      },
      // What an apply stored before issue 19a: operations, header, outbox row and outbox count, auto-commit.
      byHand: async () => {
        const tx = db.transaction(["ops", "keyframes", "docs", "outbox", "meta"], "readwrite", { durability: "strict" });
        const o = captured.ops[0];
        tx.objectStore("ops").add({ u: "bench/global/main", i: next++, j: o.j });
        tx.objectStore("docs").put(captured.docs[0] ?? { k: "bench/doc", header: "{}" });
        const r = captured.outboxAdd[0];
        tx.objectStore("outbox").add({ doc: r.doc, scope: r.scope, j: r.j, id: r.id, ms: r.ms, c: r.c });
        tx.objectStore("meta").put({ k: "bench/count", v: String(next) });
        await new Promise((res, rej) => { tx.oncomplete = res; tx.onerror = () => rej(tx.error); });
      },
      // The same four requests, committed explicitly.
      byHandCommit: async () => {
        const tx = db.transaction(["ops", "keyframes", "docs", "outbox", "meta"], "readwrite", { durability: "strict" });
        tx.objectStore("ops").add({ u: "bench/global/main", i: next++, j: captured.ops[0].j });
        tx.objectStore("docs").put(captured.docs[0] ?? { k: "bench/doc", header: "{}" });
        const r = captured.outboxAdd[0];
        tx.objectStore("outbox").add({ doc: r.doc, scope: r.scope, j: r.j, id: r.id, ms: r.ms, c: r.c });
        tx.objectStore("meta").put({ k: "bench/count", v: String(next) });
        const done = new Promise((res, rej) => { tx.oncomplete = res; tx.onerror = () => rej(tx.error); });
        tx.commit();
        await done;
      },
      // What an apply stores now: its operations and its outbox row (carrying the count), committed explicitly.
      twoCommit: async () => {
        const tx = db.transaction(["ops", "keyframes", "docs", "outbox", "meta"], "readwrite", { durability: "strict" });
        tx.objectStore("ops").add({ u: "bench/global/main", i: next++, j: captured.ops[0].j });
        const r = captured.outboxAdd[0];
        tx.objectStore("outbox").add({ doc: r.doc, scope: r.scope, j: r.j, id: r.id, ms: r.ms, c: r.c, n: next, at: next });
        const done = new Promise((res, rej) => { tx.oncomplete = res; tx.onerror = () => rej(tx.error); });
        tx.commit();
        await done;
      },
      opsOnly: async () => {
        const tx = db.transaction(["ops"], "readwrite", { durability: "strict" });
        tx.objectStore("ops").add({ u: "bench/global/main", i: next++, j: captured.ops[0].j });
        await new Promise((res, rej) => { tx.oncomplete = res; tx.onerror = () => rej(tx.error); });
      },
      relaxedByHand: async () => {
        const tx = db.transaction(["ops", "keyframes", "docs", "outbox", "meta"], "readwrite", { durability: "relaxed" });
        tx.objectStore("ops").add({ u: "bench/global/main", i: next++, j: captured.ops[0].j });
        tx.objectStore("docs").put(captured.docs[0] ?? { k: "bench/doc", header: "{}" });
        tx.objectStore("meta").put({ k: "bench/count", v: String(next) });
        await new Promise((res, rej) => { tx.oncomplete = res; tx.onerror = () => rej(tx.error); });
      },
      apply: async () => { await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `i${next % 300}`, title: `t ${next++}` } }]); },
    };
    for (let rep = 0; rep < 3; rep++) for (const [k, fn] of Object.entries(variants)) {
      const ts = [];
      for (let i = 0; i < 150; i++) { const t = performance.now(); await fn(); ts.push(performance.now() - t); }
      out[`${k} #${rep}`] = q(ts.slice(20));
    }
    await f.close();
    return out;
  });
  console.log(JSON.stringify(r, null, 1));
} finally { await br.close(); await server.close(); rmSync(site, { recursive: true, force: true }); }
