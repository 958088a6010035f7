// Where a page's `apply` goes: a bare IndexedDB transaction of three small puts (strict, relaxed and default
// durability), the whole apply and its commit, and the WebAssembly call alone. Not a test; it reads private fields.
//
//   cd clients/js && FOLIO_BIN=/path/to/release/folio node bench/breakdown-apply.mjs
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
    const out = {};
    // raw IndexedDB: one small transaction of 3 puts
    const db = await new Promise((res) => { const r = indexedDB.open("raw", 1); r.onupgradeneeded = () => { for (const s of ["ops", "docs", "outbox", "keyframes", "meta"]) r.result.createObjectStore(s, { keyPath: "k" }); }; r.onsuccess = () => res(r.result); });
    const text = "x".repeat(600);
    for (const [label, stores, durability] of [["strict5", ["ops", "docs", "outbox", "keyframes", "meta"], "strict"], ["strict3", ["ops", "docs", "outbox"], "strict"], ["relaxed3", ["ops", "docs", "outbox"], "relaxed"], ["default3", ["ops", "docs", "outbox"], "default"]]) {
      const ts = [];
      for (let i = 0; i < 300; i++) {
        const t = performance.now();
        const tx = db.transaction(stores, "readwrite", { durability });
        tx.objectStore("ops").put({ k: `${label}${i}`, j: text }); tx.objectStore("docs").put({ k: "d", j: text }); tx.objectStore("outbox").put({ k: `${label}${i}`, j: text });
        await new Promise((res) => (tx.oncomplete = res));
        ts.push(performance.now() - t);
      }
      out[label] = q(ts.slice(50));
    }
    db.close();
    const f = await window.client.FolioReplica.open({ name: "apply", autoSync: false });
    const doc = await f.create("folio/todo-list", "apply");
    const tc = [];
    { const c = f.store.commit.bind(f.store); f.store.commit = async (x) => { const t = performance.now(); try { return await c(x); } finally { tc.push(performance.now() - t); } }; }
    const ts = [];
    for (let i = 0; i < 600; i++) {
      const t = performance.now();
      await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `i${i % 300}`, title: `title ${i}` } }]);
      ts.push(performance.now() - t);
    }
    out.apply = q(ts.slice(100)); out.commit = q(tc.slice(100));
    // the wasm call alone, on a core holding the same document
    const core = f.core;
    const tw = [], th = [], tr = [];
    for (let i = 0; i < 400; i++) {
      let t = performance.now();
      const a = core.apply(doc.id, "main", JSON.stringify([{ type: "ADD_TODO", input: { id: `i${i % 300}`, title: `w ${i}` } }]));
      tw.push(performance.now() - t);
      t = performance.now();
      const h = core.header(doc.id, "main"); JSON.parse(h);
      th.push(performance.now() - t);
      t = performance.now();
      const lines = a.split("\n"); JSON.parse(lines[0]); lines.slice(1, 2).map((o) => JSON.parse(o));
      tr.push(performance.now() - t);
    }
    out.wasmApply = q(tw.slice(50)); out.header = q(th.slice(50)); out.parse = q(tr.slice(50));
    await f.close();
    return out;
  });
  console.log(JSON.stringify(r));
} finally { await br.close(); await server.close(); rmSync(site, { recursive: true, force: true }); }
