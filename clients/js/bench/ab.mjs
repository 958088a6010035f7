// Two builds of the client side by side in one Chromium, their runs interleaved, so that both see the same load
// (on a shared machine the load moves more between two runs than any change): `apply` latency in the page and
// through the SharedWorker, and opening a keyframed document in a running replica (a second tab while the
// SharedWorker holds it loaded, and `Folio.open` + `get` of a replica in the page, its module compiled). Not a test.
//
//   cd clients/js && FOLIO_BIN=… FOLIO_AB_BEFORE=<a dist> [FOLIO_AB_AFTER=dist] node bench/ab.mjs
//
// Environment: FOLIO_AB_BLOCKS (interleaved blocks, default 10), FOLIO_AB_APPLIES (applies per block, 50),
// FOLIO_AB_OPENS (open rounds per build, 9; 0: applies only), FOLIO_AB_SIZE (the document's operations, 1000),
// FOLIO_AB_APPLY_MODES (off,worker,worker-sub: in the page; through the SharedWorker; through it with the calling
// tab and a second tab subscribed to the document, as an app has them), FOLIO_AB_GAP (ms the page waits between two
// applies, as between a person's edits: 0).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { appServer, browser } from "../test/browser/web.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const builds = { before: process.env.FOLIO_AB_BEFORE, after: process.env.FOLIO_AB_AFTER || join(here, "..", "dist") };
if (!builds.before) throw new Error("FOLIO_AB_BEFORE: the dist/ of the build to compare with");
const BLOCKS = Number(process.env.FOLIO_AB_BLOCKS || 10);
const APPLIES = Number(process.env.FOLIO_AB_APPLIES || 50);
const OPENS = Number(process.env.FOLIO_AB_OPENS || 9);
const SIZE = Number(process.env.FOLIO_AB_SIZE || 1000);
const GAP = Number(process.env.FOLIO_AB_GAP || 0);
const SIDES = ["before", "after"];

const site = mkdtempSync(join(tmpdir(), "folio-ab-site-"));
for (const side of SIDES) {
  mkdirSync(join(site, side));
  for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(builds[side], file), join(site, side, file));
}
writeFileSync(
  join(site, "index.html"),
  `<!doctype html><meta charset="utf-8"><script type="module">
  import * as before from "/before/folio-client.js";
  import * as after from "/after/folio-client.js";
  window.builds = { before, after };
  window.ready = true;
</script>`,
);
const q = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");

const server = await appServer({ staticDir: site });
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
const out = { load: { start: load() } };
try {
  // ---- apply: the same page, one replica per build and mode, blocks interleaved ----
  // "worker, subscribed": as an app uses it, the calling tab and a second tab subscribe to the document.
  for (const mode of (process.env.FOLIO_AB_APPLY_MODES || "off,worker,worker-sub").split(",")) {
    const shared = mode === "off" ? "off" : "worker";
    const p = await page();
    const ids = await p.evaluate(
      async ({ shared, mode }) => {
        window.open_ = {};
        window.heard = { before: 0, after: 0 };
        const ids = {};
        for (const side of ["before", "after"]) {
          const { Folio } = window.builds[side];
          const f = await Folio.open({ name: `ab-apply-${mode}-${side}`, shared, autoSync: false, workerUrl: `/${side}/folio-worker.js` });
          const doc = await f.create("folio/todo-list", "apply");
          if (mode === "worker-sub") f.subscribe(doc.id, () => window.heard[side]++);
          for (let i = 0; i < 50; i++) await f.apply(doc.id, [{ type: "ADD_TODO", input: { id: `w${i}`, title: `warm ${i}` } }]);
          window.open_[side] = { f, id: doc.id };
          ids[side] = doc.id;
        }
        return ids;
      },
      { shared, mode },
    );
    let other = null;
    if (mode === "worker-sub") {
      other = await page();
      await other.evaluate(
        async ({ mode, ids }) => {
          window.heard = { before: 0, after: 0 };
          window.open_ = {};
          for (const side of ["before", "after"]) {
            const f = await window.builds[side].Folio.open({ name: `ab-apply-${mode}-${side}`, shared: "worker", autoSync: false, workerUrl: `/${side}/folio-worker.js` });
            f.subscribe(ids[side], () => window.heard[side]++);
            window.open_[side] = { f };
          }
        },
        { mode, ids },
      );
    }
    const times = await p.evaluate(
      async ({ BLOCKS, APPLIES, GAP }) => {
        const open = window.open_;
        const times = { before: [], after: [] };
        for (let b = 0; b < BLOCKS; b++) {
          for (const side of b % 2 ? ["after", "before"] : ["before", "after"]) {
            const { f, id } = open[side];
            for (let i = 0; i < APPLIES; i++) {
              const t = performance.now();
              await f.apply(id, [{ type: "ADD_TODO", input: { id: `i${i % 300}`, title: `title ${b} ${i}` } }]);
              times[side].push(performance.now() - t);
              if (GAP > 0) await new Promise((r) => setTimeout(r, GAP));
            }
          }
        }
        await new Promise((r) => setTimeout(r, 200));
        for (const side of ["before", "after"]) await open[side].f.close();
        return times;
      },
      { BLOCKS, APPLIES, GAP },
    );
    const heard = other ? await other.evaluate(() => window.heard) : null;
    await closeAll();
    const label = { off: "in the page", worker: "through the SharedWorker", "worker-sub": "through the SharedWorker, this tab and another subscribed" }[mode];
    out[`apply ${mode === "off" ? "page" : mode}`] = Object.fromEntries(
      SIDES.map((s) => [s, { p50: q(times[s], 0.5), p90: q(times[s], 0.9), n: times[s].length, ...(heard ? { heardInOtherTab: heard[s] } : {}) }]),
    );
    console.log(
      `apply (${label}): ${SIDES.map((s) => `${s} p50 ${q(times[s], 0.5).toFixed(2)} ms p90 ${q(times[s], 0.9).toFixed(2)}${heard ? ` (other tab heard ${heard[s]})` : ""}`).join("; ")} [load ${load()}]`,
    );
  }
  // ---- open: a keyframed document of SIZE operations, one database per build ----
  const ids = {};
  if (OPENS > 0) {
    const p = await page();
    for (const side of SIDES) {
      ids[side] = await p.evaluate(
        async ({ side, SIZE }) => {
          const f = await window.builds[side].Folio.open({ name: `ab-open-${side}`, shared: "off", autoSync: false });
          const doc = await f.create("folio/todo-list", "open");
          for (let i = 1; i < SIZE; i += 250) {
            const batch = [];
            for (let k = i; k < Math.min(SIZE, i + 250); k++) {
              batch.push(
                k <= 500
                  ? { type: "ADD_TODO", input: { id: `i${k}`, title: `title ${k}` } }
                  : { type: "UPDATE_TODO", input: { id: `i${(k % 500) + 1}`, done: k % 2 === 0, title: `title ${k}` } },
              );
            }
            await f.apply(doc.id, batch);
          }
          await f.close();
          return doc.id;
        },
        { side, SIZE },
      );
    }
    await closeAll();
  }
  const opens = { before: { second: [], secondGet: [], page: [], pageGet: [] }, after: { second: [], secondGet: [], page: [], pageGet: [] } };
  for (let round = 0; round < OPENS; round++) {
    for (const side of round % 2 ? ["after", "before"] : ["before", "after"]) {
      const name = `ab-open-${side}`;
      const workerUrl = `/${side}/folio-worker.js`;
      // A first tab starts the worker and loads the document there; a second tab opens it.
      const w = await page();
      await w.evaluate(
        async ({ side, name, workerUrl, id }) => {
          window.f = await window.builds[side].Folio.open({ name, shared: "worker", workerUrl, autoSync: false });
          await window.f.get(id);
        },
        { side, name, workerUrl, id: ids[side] },
      );
      const w2 = await page();
      const second = await w2.evaluate(
        async ({ side, name, workerUrl, id }) => {
          const t0 = performance.now();
          const f = await window.builds[side].Folio.open({ name, shared: "worker", workerUrl, autoSync: false });
          const t1 = performance.now();
          await f.get(id);
          const t2 = performance.now();
          await f.close();
          return { open: t1 - t0, get: t2 - t1 };
        },
        { side, name, workerUrl, id: ids[side] },
      );
      await w.evaluate(() => window.f.close());
      await closeAll();
      opens[side].second.push(second.open + second.get);
      opens[side].secondGet.push(second.get);
      // The replica in a page whose module is compiled (a first open and get warm it up), then again.
      const p = await page();
      const inPage = await p.evaluate(
        async ({ side, name, id }) => {
          const { Folio } = window.builds[side];
          const first = await Folio.open({ name, shared: "off", autoSync: false });
          await first.get(id);
          await first.close();
          const t0 = performance.now();
          const f = await Folio.open({ name, shared: "off", autoSync: false });
          const t1 = performance.now();
          await f.get(id);
          const t2 = performance.now();
          await f.close();
          return { open: t1 - t0, get: t2 - t1 };
        },
        { side, name, id: ids[side] },
      );
      await closeAll();
      opens[side].page.push(inPage.open + inPage.get);
      opens[side].pageGet.push(inPage.get);
    }
  }
  for (const [what, label] of OPENS === 0 ? [] : [
    ["second", "a second tab while the SharedWorker holds it loaded (open + get)"],
    ["page", "the replica in a page, module compiled (Folio.open + get)"],
  ]) {
    out[`open ${what}`] = Object.fromEntries(SIDES.map((s) => [s, { p50: q(opens[s][what], 0.5), get: q(opens[s][`${what}Get`], 0.5), n: opens[s][what].length }]));
    console.log(
      `open ${SIZE} ops, ${label}: ${SIDES.map((s) => `${s} ${q(opens[s][what], 0.5).toFixed(1)} ms (get ${q(opens[s][`${what}Get`], 0.5).toFixed(1)})`).join("; ")} [load ${load()}]`,
    );
  }
  out.load.end = load();
  mkdirSync(join(here, "results"), { recursive: true });
  writeFileSync(join(here, "results", "ab.json"), JSON.stringify(out, null, 2));
} finally {
  await br.close();
  await server.close();
  rmSync(site, { recursive: true, force: true });
}
