// Browser benchmarks (a script, not a test) in real headless Chromium against a real `folio serve --static`, beside
// the same work by the Rust replica (`folio bench`) on the same machine. Prints the figures and writes
// bench/results/browser.json.
//
//   scripts/bench-browser                     # builds clients/js, then runs this with FOLIO_BIN
//   cd clients/js && FOLIO_BIN=/path/to/folio node bench/browser.mjs
//
// 1. cold open of a 1,000 / 10,000 / 100,000-operation document from IndexedDB (keyframes every 250 operations,
//    its actions acknowledged: the outbox emptied as a sync would):
//    a new page loads the WebAssembly (compile + instantiate, from the HTTP cache), opens the replica and `get`s the
//    document; also the first tab of the origin through the SharedWorker (worker start, its wasm, IndexedDB, get);
// 2. local `apply` latency, one action per call, resolved once durable in IndexedDB: in the page's own replica,
//    and from a tab through the SharedWorker;
// 3. tab to tab: one tab applies, another tab's `subscribe` hears it (SharedWorker, and leader tab);
// 4. sync of 10,000 operations both ways: two browser replicas each make 5,000 operations offline on one shared
//    document, then sync until both have everything (as `folio bench sync --ops 10000 --docs 1` does with Rust
//    replicas); also one-way: 10,000 pushed, then pulled by a fresh replica.
//
// Environment: FOLIO_BIN, CHROMIUM, FOLIO_BENCH_SIZES (default 1000,10000,100000), FOLIO_BENCH_CASES (default
// open,apply,tabs,sync), FOLIO_BENCH_RUST=0 (skip Rust), FOLIO_BENCH_DIST (the built client to measure, default
// dist/: a copy of another build's dist/ measures it with the same harness).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { FOLIO_BIN, folio } from "../test/helpers.mjs";
import { appServer, browser } from "../test/browser/web.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const SIZES = (process.env.FOLIO_BENCH_SIZES || "1000,10000,100000").split(",").map(Number);
const SAMPLES = 5;
const CASES = new Set((process.env.FOLIO_BENCH_CASES || "open,apply,tabs,sync").split(","));
const q = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};
const med = (xs) => q(xs, 0.5);
const f = (x) => (x === undefined || x === null ? "n/a" : `${x.toFixed(x < 10 ? 2 : 1)} ms`);

// The page: folio-client's bundle, its worker and .wasm, served by `folio serve --static` (the API's origin).
const site = mkdtempSync(join(tmpdir(), "folio-bench-site-"));
const dist = process.env.FOLIO_BENCH_DIST || join(here, "..", "dist");
for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(dist, file), join(site, file));
writeFileSync(
  join(site, "index.html"),
  `<!doctype html><meta charset="utf-8"><title>folio bench</title>
<script type="module">
  import * as client from "/folio-client.js";
  window.client = client;
  window.Folio = client.Folio;
  window.now = () => performance.timeOrigin + performance.now();
  window.ready = true;
</script>`,
);

const server = await appServer({ staticDir: site });
const results = { machine: { node: process.version }, chromium: {}, rust: {} };
const br = await browser();
const page = async () => {
  const p = await br.context.newPage();
  await p.goto(`${server.url}/`);
  await p.waitForFunction(() => window.ready === true);
  return p;
};
const closeAll = async () => {
  for (const p of br.context.pages()) await p.close();
  await new Promise((r) => setTimeout(r, 300));
};

try {
  results.machine.chromium = br.context.browser()?.version() ?? "(persistent context)";

  // ---- 1. cold open of keyframed documents ----
  results.chromium.open = [];
  for (const n of CASES.has("open") ? SIZES : []) {
    const builder = await page();
    const built = await builder.evaluate(async (n) => {
      const f = await window.Folio.open({ name: `open-${n}`, shared: "off", autoSync: false });
      const doc = await f.create("folio/todo-list", `open ${n}`);
      const t0 = performance.now();
      for (let i = 1; i < n; i += 250) {
        const batch = [];
        for (let k = i; k < Math.min(n, i + 250); k++) {
          batch.push(
            k <= 500
              ? { type: "ADD_TODO", input: { id: `i${k}`, title: `title ${k}` } }
              : { type: "UPDATE_TODO", input: { id: `i${(k % 500) + 1}`, done: k % 2 === 0, title: `title ${k}` } },
          );
        }
        await f.apply(doc.id, batch);
      }
      const d = await f.get(doc.id);
      await f.close();
      // As if it had been synced: its actions leave the outbox, and the outbox's row count kept in meta is 0 (as a
      // push leaves them: see src/store.ts).
      await new Promise((resolve, reject) => {
        const req = indexedDB.open(`folio:open-${n}`);
        req.onsuccess = () => {
          const tx = req.result.transaction(["outbox", "meta"], "readwrite");
          tx.objectStore("outbox").clear();
          tx.objectStore("meta").put({ k: "outbox/count", v: "0" });
          tx.oncomplete = () => (req.result.close(), resolve());
          tx.onerror = () => reject(tx.error);
        };
        req.onerror = () => reject(req.error);
      });
      return { id: doc.id, ms: performance.now() - t0, revision: d.header.revision.global + d.header.revision.document };
    }, n);
    await closeAll();
    const page1 = [];
    const worker = [];
    for (let round = 0; round < SAMPLES; round++) {
      // A new page, the replica in the page.
      const p = await page();
      page1.push(
        await p.evaluate(async ({ n, id }) => {
          const t0 = performance.now();
          await window.client.loadWasm();
          const t1 = performance.now();
          const f = await window.Folio.open({ name: `open-${n}`, shared: "off", autoSync: false });
          const t2 = performance.now();
          const d = await f.get(id);
          const t3 = performance.now();
          await f.close();
          if (!d) throw new Error("no document");
          // Again in the same page: a new replica (nothing cached), the WebAssembly code now compiled.
          const t4 = performance.now();
          const g = await window.Folio.open({ name: `open-${n}`, shared: "off", autoSync: false });
          const t5 = performance.now();
          await g.get(id);
          const t6 = performance.now();
          await g.close();
          return { wasm: t1 - t0, open: t2 - t1, get: t3 - t2, warmOpen: t5 - t4, warmGet: t6 - t5 };
        }, { n, id: built.id }),
      );
      await closeAll();
      // The first tab of the origin: the SharedWorker starts, loads its wasm, opens IndexedDB, folds.
      const w = await page();
      const first = await w.evaluate(async ({ n, id }) => {
        const t0 = performance.now();
        window.f = await window.Folio.open({ name: `open-${n}`, autoSync: false });
        const t1 = performance.now();
        await window.f.get(id);
        const t2 = performance.now();
        return { open: t1 - t0, get: t2 - t1, mode: window.f.mode };
      }, { n, id: built.id });
      // A second tab while the first keeps the worker (the running replica): its open and get of the document.
      const w2 = await page();
      const second = await w2.evaluate(async ({ n, id }) => {
        const t0 = performance.now();
        const f = await window.Folio.open({ name: `open-${n}`, autoSync: false });
        const t1 = performance.now();
        await f.get(id);
        const t2 = performance.now();
        await f.close();
        return { open: t1 - t0, get: t2 - t1 };
      }, { n, id: built.id });
      await w.evaluate(() => window.f.close());
      worker.push({ ...first, secondOpen: second.open, secondGet: second.get });
      await closeAll();
    }
    const row = {
      ops: built.revision,
      buildMs: built.ms,
      pageWasmMs: med(page1.map((o) => o.wasm)),
      pageOpenMs: med(page1.map((o) => o.open)),
      pageGetMs: med(page1.map((o) => o.get)),
      pageOpenGetMs: med(page1.map((o) => o.open + o.get)),
      pageTotalMs: med(page1.map((o) => o.wasm + o.open + o.get)),
      warmOpenGetMs: med(page1.map((o) => o.warmOpen + o.warmGet)),
      warmGetMs: med(page1.map((o) => o.warmGet)),
      workerFirstTabMs: med(worker.map((o) => o.open + o.get)),
      workerGetMs: med(worker.map((o) => o.get)),
      workerSecondTabMs: med(worker.map((o) => o.secondOpen + o.secondGet)),
      workerSecondGetMs: med(worker.map((o) => o.secondGet)),
      workerMode: worker[0]?.mode,
    };
    results.chromium.open.push(row);
    console.log(
      `open ${row.ops} ops: replica open + get ${f(row.pageOpenGetMs)} (open ${f(row.pageOpenMs)}, get ${f(row.pageGetMs)}); wasm compile ${f(row.pageWasmMs)}; again with compiled code ${f(row.warmOpenGetMs)} (get ${f(row.warmGetMs)}); first tab via SharedWorker ${f(row.workerFirstTabMs)} (get ${f(row.workerGetMs)}); a second tab while the worker runs ${f(row.workerSecondTabMs)} (get ${f(row.workerSecondGetMs)}) [built in ${(row.buildMs / 1000).toFixed(1)} s]`,
    );
  }

  // ---- 2. apply latency ----
  const applyIn = async (shared) => {
    const p = await page();
    const times = await p.evaluate(async (shared) => {
      const f = await window.Folio.open({ name: `apply-${shared}`, shared, autoSync: false });
      const doc = await f.create("folio/todo-list", "apply");
      const times = [];
      for (let i = 0; i < 1100; i++) {
        const t = performance.now();
        await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `i${i % 300}`, title: `title ${i}` } }]);
        times.push(performance.now() - t);
      }
      await f.close();
      return times.slice(100); // the first 100 warm up
    }, shared);
    await closeAll();
    return { p50: q(times, 0.5), p99: q(times, 0.99), n: times.length };
  };
  if (CASES.has("apply")) results.chromium.apply = { page: await applyIn("off"), worker: await applyIn("worker") };
  if (CASES.has("apply")) console.log(
    `apply (1 action, durable): in the page p50 ${f(results.chromium.apply.page.p50)} p99 ${f(results.chromium.apply.page.p99)}; from a tab through the SharedWorker p50 ${f(results.chromium.apply.worker.p50)} p99 ${f(results.chromium.apply.worker.p99)}`,
  );

  // ---- 3. tab to tab ----
  const tabToTab = async (shared) => {
    const a = await page();
    const b = await page();
    const name = `t2t-${shared}`;
    const id = await a.evaluate(async ({ name, shared }) => {
      window.f = await window.Folio.open({ name, shared, autoSync: false });
      return (await window.f.create("folio/todo-list", "t2t")).id;
    }, { name, shared });
    await b.evaluate(async ({ name, shared, id }) => {
      window.f = await window.Folio.open({ name, shared, autoSync: false });
      window.heard = {};
      window.f.subscribe(id, (d) => {
        window.heard[d.header.revision.global] = window.now();
      });
    }, { name, shared, id });
    const sent = await a.evaluate(async (id) => {
      const sent = {};
      for (let i = 0; i < 220; i++) {
        const t = window.now();
        const r = await window.f.apply(id, [{ type: "ADD_TODO", input: { id: `i${i % 50}`, title: `t ${i}` } }]);
        sent[r.revision] = t;
        await new Promise((r) => setTimeout(r, 10));
      }
      return sent;
    }, id);
    await new Promise((r) => setTimeout(r, 300));
    const heard = await b.evaluate(() => window.heard);
    const lat = Object.keys(sent)
      .map((rev) => heard[rev] - sent[rev])
      .filter((x) => Number.isFinite(x))
      .slice(20);
    const modes = [await a.evaluate(() => window.f.mode), await b.evaluate(() => window.f.mode)];
    await a.evaluate(() => window.f.close());
    await b.evaluate(() => window.f.close());
    await closeAll();
    return { p50: q(lat, 0.5), p99: q(lat, 0.99), n: lat.length, modes };
  };
  if (CASES.has("tabs")) results.chromium.tabToTab = { worker: await tabToTab("worker"), leader: await tabToTab("leader") };
  if (CASES.has("tabs")) console.log(
    `tab to tab (apply in one, subscribe in another): SharedWorker p50 ${f(results.chromium.tabToTab.worker.p50)} p99 ${f(results.chromium.tabToTab.worker.p99)}; leader tab (${results.chromium.tabToTab.leader.modes}) p50 ${f(results.chromium.tabToTab.leader.p50)} p99 ${f(results.chromium.tabToTab.leader.p99)}`,
  );

  // ---- 4. sync ----
  const syncRuns = [];
  for (let round = 0; round < (CASES.has("sync") ? 3 : 0); round++) {
    // Each round on a fresh server (its own origin and store): the pull of the one-way case moves its 10,000 only.
    const own = await appServer({ staticDir: site });
    const p = await br.context.newPage();
    await p.goto(`${own.url}/`);
    await p.waitForFunction(() => window.ready === true);
    syncRuns.push(
      await p.evaluate(
        async ({ url, token, round }) => {
          const open = (name) => window.Folio.open({ url, token, name, shared: "off", autoSync: false, compress: false });
          // Both ways: two replicas share a document, each makes 5,000 operations offline, then they converge.
          const a = await open(`sync-a-${round}`);
          const b = await open(`sync-b-${round}`);
          const doc = await a.create("folio/todo-list", "sync");
          await a.sync();
          await b.sync();
          const make = async (f, who) => {
            for (let i = 0; i < 5000; i += 250) {
              const batch = [];
              for (let k = i; k < i + 250; k++) batch.push({ type: "ADD_TODO", input: { id: `${who}${k % 400}`, title: `${who} ${k}` } });
              await f.apply(doc.id, batch);
            }
          };
          await make(a, "a");
          await make(b, "b");
          const t0 = performance.now();
          const ra = await a.sync();
          const rb = await b.sync();
          const ra2 = await a.sync();
          const both = performance.now() - t0;
          const [da, db] = [await a.get(doc.id), await b.get(doc.id)];
          if (da.stateHash !== db.stateHash) throw new Error("not converged");
          await a.close();
          await b.close();
          // One way: 10,000 pushed by one replica, pulled by a fresh one.
          const c = await open(`sync-c-${round}`);
          const d2 = await c.create("folio/todo-list", "one way");
          for (let i = 0; i < 10000; i += 250) {
            const batch = [];
            for (let k = i; k < i + 250; k++) batch.push({ type: "ADD_TODO", input: { id: `c${k % 400}`, title: `c ${k}` } });
            await c.apply(d2.id, batch);
          }
          const t1 = performance.now();
          const pushed = await c.sync();
          const t2 = performance.now();
          await c.close();
          const e = await open(`sync-e-${round}`);
          const t3 = performance.now();
          const pulled = await e.sync();
          const t4 = performance.now();
          await e.close();
          return {
            bothMs: both,
            moved: ra.pushed + rb.pushed + rb.pulled + ra2.pulled,
            pushMs: t2 - t1,
            pushed: pushed.pushed,
            pullMs: t4 - t3,
            pulled: pulled.pulled,
          };
        },
        { url: own.url, token: own.token, round },
      ),
    );
    await closeAll();
    await own.close();
  }
  if (syncRuns.length) results.chromium.sync = {
    bothWaysMs: med(syncRuns.map((r) => r.bothMs)),
    moved: syncRuns[0].moved,
    pushMs: med(syncRuns.map((r) => r.pushMs)),
    pushed: syncRuns[0].pushed,
    pullMs: med(syncRuns.map((r) => r.pullMs)),
    pulled: syncRuns[0].pulled,
    runs: syncRuns,
  };
  const s = results.chromium.sync;
  if (s) console.log(
    `sync: 2 x 5,000 offline operations on one document, both ways until converged ${f(s.bothWaysMs)} (${s.moved} entries moved); one way: push ${s.pushed} in ${f(s.pushMs)}, a fresh replica pulls ${s.pulled} in ${f(s.pullMs)}`,
  );
} finally {
  await br.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
}

if (process.env.FOLIO_BENCH_RUST !== "0") {
  const data = mkdtempSync(join(tmpdir(), "folio-bench-rust-"));
  const bench = async (args) => {
    const out = await folio(["bench", ...args, "--json", "--data-dir", join(data, args[0])], { maxBuffer: 256 * 1024 * 1024 });
    return out.trim().split("\n").map((l) => JSON.parse(l));
  };
  try {
    results.rust.rehydrate = await bench(["rehydrate", "--ops", SIZES.join(",")]);
    results.rust.append = await bench(["append", "--writers", "1", "--docs", "1", "--ops", "1000", "--batch", "1"]);
    results.rust.sync = await bench(["sync", "--ops", "10000", "--docs", "1"]);
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
  console.log(`rust (${FOLIO_BIN}):`);
  console.log(JSON.stringify(results.rust));
}
mkdirSync(join(here, "results"), { recursive: true });
writeFileSync(join(here, "results", "browser.json"), JSON.stringify(results, null, 2));
console.log(`written ${join(here, "results", "browser.json")}`);
