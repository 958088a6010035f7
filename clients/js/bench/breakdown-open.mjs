// Where opening a keyframed document goes (`get` on a replica that has not loaded it): the IndexedDB read of the
// keyframe and tail (`loadInput`), the WebAssembly load (parse, chain check, fold) and the document's JSON
// (`document` + JSON.parse). Not a test; it reads private fields.
//
//   cd clients/js && FOLIO_BIN=/path/to/folio node bench/breakdown-open.mjs      # SIZES=1000,10000,100000
import { copyFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appServer, browser } from "../test/browser/web.mjs";
const DIST = process.env.FOLIO_BENCH_DIST || new URL("../dist", import.meta.url).pathname;
const SIZES = (process.env.SIZES || "1000,10000,100000").split(",").map(Number);
const site = mkdtempSync(join(tmpdir(), "folio-prof-site-"));
for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(DIST, file), join(site, file));
writeFileSync(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><script type="module">
  import * as client from "/folio-client.js"; window.client = client; window.Folio = client.Folio; window.ready = true;</script>`);
const server = await appServer({ staticDir: site });
const br = await browser();
try {
  const p = await br.context.newPage(); await p.goto(`${server.url}/`); await p.waitForFunction(() => window.ready === true);
  for (const n of SIZES) {
    const r = await p.evaluate(async (n) => {
      const med = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1].toFixed(2);
      const f = await window.client.FolioReplica.open({ name: `open-${n}`, autoSync: false });
      const doc = await f.create("folio/todo-list", "open");
      for (let i = 1; i < n; i += 250) {
        const batch = [];
        for (let k = i; k < Math.min(n, i + 250); k++) batch.push(k <= 500 ? { type: "ADD_TODO", input: { id: `i${k}`, title: `title ${k}` } } : { type: "UPDATE_TODO", input: { id: `i${(k % 500) + 1}`, done: k % 2 === 0, title: `title ${k}` } });
        await f.apply(doc.id, batch);
      }
      await f.close();
      const spent = { open: [], load: [], wasm: [], doc: [], get: [], inputKB: 0 };
      for (let round = 0; round < 9; round++) {
        let t = performance.now();
        const g = await window.client.FolioReplica.open({ name: `open-${n}`, autoSync: false });
        spent.open.push(performance.now() - t);
        const li = g.store.loadInput.bind(g.store);
        g.store.loadInput = async (...a) => { const t = performance.now(); const x = await li(...a); spent.load.push(performance.now() - t); spent.inputKB = x.length / 1024; return x; };
        const core = g.core;
        for (const [m, k] of [["load", "wasm"], ["document", "doc"]]) { const h = core[m].bind(core); core[m] = (...a) => { const t = performance.now(); try { return h(...a); } finally { spent[k].push(performance.now() - t); } }; }
        t = performance.now();
        await g.get(doc.id);
        spent.get.push(performance.now() - t);
        await g.close();
      }
      return `open ${n}: replica open ${med(spent.open)} ms; get ${med(spent.get)} ms = IndexedDB read ${med(spent.load)} ms (${spent.inputKB.toFixed(0)} KB) + wasm load ${med(spent.wasm)} ms + document text ${med(spent.doc)} ms + rest`;
    }, n);
    console.log(r);
  }
} finally { await br.close(); await server.close(); rmSync(site, { recursive: true, force: true }); }
