// What an `apply` through the SharedWorker costs beyond the platform's own floor, in one Chromium page, blocks
// interleaved: folio's `apply` in the page and through its SharedWorker, beside a bare SharedWorker (no folio) that
// echoes a message (the MessagePort round trip) and commits a strict transaction of two small adds (one operation
// record and one outbox row, as an apply writes) on request, and the same transaction made in the page. Not a test.
//
//   cd clients/js && FOLIO_BIN=… [FOLIO_BENCH_DIST=<a dist>] node bench/breakdown-worker.mjs
//
// Environment: FOLIO_BW_BLOCKS (interleaved blocks, default 10), FOLIO_BW_N (calls per case and block, 50).
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { appServer, browser } from "../test/browser/web.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const dist = process.env.FOLIO_BENCH_DIST || join(here, "..", "dist");
const BLOCKS = Number(process.env.FOLIO_BW_BLOCKS || 10);
const N = Number(process.env.FOLIO_BW_N || 50);

const site = mkdtempSync(join(tmpdir(), "folio-bw-site-"));
for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(dist, file), join(site, file));
// The bare transaction: the sizes of an apply's records (an operation's text ~600 bytes, its entry ~700).
const bareTx = `
const openDb = (name) => new Promise((resolve, reject) => {
  const r = indexedDB.open(name, 1);
  r.onupgradeneeded = () => { r.result.createObjectStore("ops", { autoIncrement: true }); r.result.createObjectStore("outbox", { autoIncrement: true }); };
  r.onsuccess = () => resolve(r.result);
  r.onerror = () => reject(r.error);
});
const bareTx = (db, n) => new Promise((resolve, reject) => {
  const tx = db.transaction(["ops", "outbox"], "readwrite", { durability: "strict" });
  tx.objectStore("ops").add({ u: "doc/global/main", i: n, j: "x".repeat(600) });
  tx.objectStore("outbox").add({ doc: "doc", scope: "global", j: "y".repeat(700), id: "a", ms: n, c: 0 });
  tx.oncomplete = () => resolve();
  tx.onabort = () => reject(tx.error);
  tx.commit();
});`;
writeFileSync(
  join(site, "bare-worker.js"),
  `${bareTx}
const db = openDb("bare-worker");
onconnect = (e) => {
  const port = e.ports[0];
  port.onmessage = async (m) => {
    if (m.data.k === "tx") await bareTx(await db, m.data.n);
    port.postMessage(m.data.n);
  };
};`,
);
writeFileSync(
  join(site, "index.html"),
  `<!doctype html><meta charset="utf-8"><script type="module">
  import { Folio } from "/folio-client.js";
  ${bareTx}
  window.run = async ({ BLOCKS, N }) => {
    const page = await Folio.open({ name: "bw-page", shared: "off", autoSync: false });
    const worker = await Folio.open({ name: "bw-worker", shared: "worker", autoSync: false, workerUrl: "/folio-worker.js" });
    const docs = { page: (await page.create("folio/todo-list", "bw")).id, worker: (await worker.create("folio/todo-list", "bw")).id };
    const bare = new SharedWorker("/bare-worker.js");
    let answer = null;
    bare.port.onmessage = () => answer();
    const call = (k, n) => new Promise((r) => { answer = r; bare.port.postMessage({ k, n }); });
    const db = await openDb("bare-page");
    let i = 0;
    const cases = {
      "apply in the page": () => page.apply(docs.page, [{ type: "ADD_TODO", input: { id: "i" + (i % 300), title: "title " + i } }]),
      "apply through the SharedWorker": () => worker.apply(docs.worker, [{ type: "ADD_TODO", input: { id: "i" + (i % 300), title: "title " + i } }]),
      "bare: MessagePort round trip to a SharedWorker": () => call("echo", i),
      "bare: strict transaction of 2 adds in the page": () => bareTx(db, i),
      "bare: the same transaction in a SharedWorker, asked from the tab": () => call("tx", i),
    };
    const names = Object.keys(cases);
    const times = Object.fromEntries(names.map((k) => [k, []]));
    for (let warm = 0; warm < 50; warm++) for (const k of names) { i++; await cases[k](); }
    for (let b = 0; b < BLOCKS; b++) {
      for (const k of b % 2 ? [...names].reverse() : names) {
        for (let n = 0; n < N; n++) {
          i++;
          const t = performance.now();
          await cases[k]();
          times[k].push(performance.now() - t);
        }
      }
    }
    await page.close();
    await worker.close();
    return times;
  };
  window.ready = true;
</script>`,
);
const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

const server = await appServer({ staticDir: site });
const br = await browser();
try {
  const start = load();
  const p = await br.context.newPage();
  await p.goto(`${server.url}/`);
  await p.waitForFunction(() => window.ready === true);
  const times = await p.evaluate((o) => window.run(o), { BLOCKS, N });
  console.log(`${dist} [load ${start} -> ${load()}]`);
  for (const [k, xs] of Object.entries(times)) {
    console.log(`  ${k}: p50 ${q(xs, 0.5).toFixed(2)} ms, p90 ${q(xs, 0.9).toFixed(2)}, mean ${mean(xs).toFixed(2)} (${xs.length})`);
  }
} finally {
  await br.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
}
