// Benchmarks of the browser replica in real headless Chromium, beside the same work done by the Rust replica
// (`folio bench`). Not a test: it prints the figures (and writes bench/results/latest.json).
//
//   cd clients/js && npm run build && FOLIO_BIN=/path/to/release/folio node bench/run.mjs
//
// 1. local `apply`: 1,000 single-action applies on one todo list (p50/p99; each resolves once durable in
//    IndexedDB), then 9,000 more in applies of 100 actions to reach 10,000 operations;
// 2. cold open of that 10,000-operation document from IndexedDB after a page reload (WebAssembly compile,
//    `Folio.open`, `get`), 5 times;
// 3. sync with `folio serve`: the replica pushes its 10,000 operations (without compression); a fresh replica
//    (another database) pulls them; then, on a second document made the same way, the push with compression.
// Rust side: `folio bench append --writers 1 --docs 1 --ops 1000 --batch 1`, `folio bench rehydrate --ops 10000`,
// `folio bench sync --ops 10000 --docs 1`.
import { mkdirSync, writeFileSync } from "node:fs";
import { FOLIO_BIN, folio, startServer } from "../test/helpers.mjs";
import { launch } from "../test/browser/chromium.mjs";

const N = Number(process.env.FOLIO_BENCH_OPS || 10_000);
const SINGLE = Number(process.env.FOLIO_BENCH_SINGLE || 1_000);
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs) => quantile(xs, 0.5);
const ms = (x) => `${x.toFixed(1)} ms`;

const server = await startServer();
const browser = await launch();
const results = { ops: N, chromium: {}, rust: {} };
try {
  const page = await browser.open(server.url);
  const built = await page.evaluate(
    async ({ N, SINGLE }) => {
      const f = await window.Folio.open({ name: "bench", autoSync: false, shared: "off" });
      const doc = await f.create("folio/todo-list", "bench");
      const times = [];
      for (let i = 0; i < SINGLE; i++) {
        const t = performance.now();
        await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `i${i % 500}`, title: `title ${i}` } }]);
        times.push(performance.now() - t);
      }
      const t0 = performance.now();
      for (let i = SINGLE; i < N; i += 100) {
        const batch = Array.from({ length: Math.min(100, N - i) }, (_, k) => ({
          type: "UPDATE_TODO",
          input: { id: `i${(i + k) % 500}`, done: (i + k) % 2 === 0 },
        }));
        await f.apply(doc.id, batch);
      }
      const bulk = performance.now() - t0;
      const d = await f.get(doc.id);
      await f.close();
      return { id: doc.id, times, bulk, revision: d.header.revision.global, stateHash: d.stateHash };
    },
    { N, SINGLE },
  );
  results.chromium.applyP50Ms = quantile(built.times, 0.5);
  results.chromium.applyP99Ms = quantile(built.times, 0.99);
  results.chromium.bulkApplyOpsPerSec = ((N - SINGLE) / built.bulk) * 1000;
  console.log(`chromium apply (1 action, durable): p50 ${ms(results.chromium.applyP50Ms)}, p99 ${ms(results.chromium.applyP99Ms)}; applies of 100: ${results.chromium.bulkApplyOpsPerSec.toFixed(0)} ops/s`);

  const opens = [];
  for (let round = 0; round < 5; round++) {
    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    opens.push(
      await page.evaluate(async (id) => {
        const t0 = performance.now();
        const f = await window.Folio.open({ name: "bench", autoSync: false, shared: "off" });
        const t1 = performance.now();
        const d = await f.get(id);
        const t2 = performance.now();
        await f.close();
        return { open: t1 - t0, get: t2 - t1, revision: d.header.revision.global };
      }, built.id),
    );
  }
  results.chromium.coldOpenMs = median(opens.map((o) => o.open + o.get));
  results.chromium.coldOpenWasmAndDbMs = median(opens.map((o) => o.open));
  results.chromium.coldGetMs = median(opens.map((o) => o.get));
  console.log(`chromium cold open of ${opens[0].revision} ops: ${ms(results.chromium.coldOpenMs)} (wasm + IndexedDB open ${ms(results.chromium.coldOpenWasmAndDbMs)}, get (keyframe + tail fold) ${ms(results.chromium.coldGetMs)})`);

  const sync = await page.evaluate(
    async ({ url, token, id, stateHash }) => {
      // Uncompressed, so that 10,000 operations move (the model would fold the 9,000 updates of 500 items away).
      const f = await window.Folio.open({ url, token, name: "bench", autoSync: false, compress: false, shared: "off" });
      const t0 = performance.now();
      const push = await f.sync();
      const t1 = performance.now();
      await f.close();
      const g = await window.Folio.open({ url, token, name: "bench-pull", autoSync: false, shared: "off" });
      const t2 = performance.now();
      const pull = await g.sync();
      const t3 = performance.now();
      const d = await g.get(id);
      await g.close();
      if (d.stateHash !== stateHash) throw new Error("pulled replica differs");
      // The same history on another document, pushed with compression (as `folio sync` does by default).
      const h = await window.Folio.open({ url, token, name: "bench-compress", autoSync: false, shared: "off" });
      const doc = await h.create("folio/todo-list", "bench 2");
      for (let i = 0; i < 10_000; i += 100) {
        await h.apply(doc.id, Array.from({ length: 100 }, (_, k) => ({ type: "UPDATE_TODO", input: { id: `i${(i + k) % 500}`, title: "x", done: (i + k) % 2 === 0 } })));
      }
      const t4 = performance.now();
      const compressed = await h.sync();
      const t5 = performance.now();
      await h.close();
      return {
        pushMs: t1 - t0, pushed: push.pushed, pullMs: t3 - t2, pulled: pull.pulled,
        compressedPushMs: t5 - t4, compressedAway: compressed.compressed, compressedPushed: compressed.pushed,
      };
    },
    { url: server.url, token: server.token, id: built.id, stateHash: built.stateHash },
  );
  results.chromium.sync = sync;
  console.log(`chromium sync: push ${sync.pushed} actions in ${ms(sync.pushMs)}; a fresh replica pulls ${sync.pulled} in ${ms(sync.pullMs)}; with compression: ${sync.compressedAway} compressed away, ${sync.compressedPushed} pushed, ${ms(sync.compressedPushMs)}`);
} finally {
  await browser.close();
  await server.stop();
}

const bench = async (args) => {
  const out = await folio(["bench", ...args, "--json"]);
  return out.trim().split("\n").map((l) => JSON.parse(l));
};
results.rust.append = await bench(["append", "--writers", "1", "--docs", "1", "--ops", String(SINGLE), "--batch", "1", "--rounds", "1"]);
results.rust.rehydrate = await bench(["rehydrate", "--ops", String(N), "--rounds", "5"]);
results.rust.sync = await bench(["sync", "--ops", String(N), "--docs", "1", "--rounds", "1"]);
console.log(`rust (${FOLIO_BIN}):`);
for (const [name, reports] of Object.entries(results.rust)) {
  for (const report of reports) {
    for (const c of report.results) {
      const t = c.time ?? {};
      const lat = c.latencyP50Ns ? `, p50 ${ms(c.latencyP50Ns / 1e6)}, p99 ${ms(c.latencyP99Ns / 1e6)}` : "";
      console.log(`  ${name} ${c.case} (${c.ops} ops): median ${ms((t.medianNs ?? 0) / 1e6)}${lat}`);
    }
  }
}
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
writeFileSync(new URL("./results/latest.json", import.meta.url), JSON.stringify(results, null, 2));
