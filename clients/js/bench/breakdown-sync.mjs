// The browser bench's both-ways sync (two replicas, 5,000 offline actions each on one document) with each round's
// time split by wrapping the replica's internals: HTTP push and pull, IndexedDB commits and outbox reads, the
// WebAssembly core's integrate and load, and the server's CPU time (from /proc). PROFILE=1 adds Chromium's CPU
// profile of the middle round (self time per function). Not a test; it reads private fields of the replica.
//
//   cd clients/js && FOLIO_BIN=/path/to/release/folio node bench/breakdown-sync.mjs      # ROUNDS=2
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appServer, browser } from "../test/browser/web.mjs";
const DIST = process.env.FOLIO_BENCH_DIST || new URL("../dist", import.meta.url).pathname;
const site = mkdtempSync(join(tmpdir(), "folio-prof-site-"));
for (const file of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) copyFileSync(join(DIST, file), join(site, file));
writeFileSync(join(site, "index.html"), `<!doctype html><meta charset="utf-8"><script type="module">
  import * as client from "/folio-client.js"; window.client = client; window.Folio = client.Folio; window.ready = true;</script>`);
const br = await browser();
try {
  for (let round = 0; round < Number(process.env.ROUNDS || 2); round++) {
    const server = await appServer({ staticDir: site });
    const pid = (await import("node:child_process")).execFileSync("sh", ["-c", `pgrep -f "serve --data-dir ${server.dataDir}"`], { encoding: "utf8" }).trim().split("\n")[0];
    const cpu = () => { const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) * 10; };
    const p = await br.context.newPage(); if (process.env.PROFILE) await p.addInitScript(() => { window.PROF = true; }); await p.goto(`${server.url}/`); await p.waitForFunction(() => window.ready === true);
    await p.exposeFunction("serverCpu", () => cpu());
    const cdp = await br.context.newCDPSession(p);
    await p.exposeFunction("profStart", async () => { await cdp.send("Profiler.enable"); await cdp.send("Profiler.setSamplingInterval", { interval: 200 }); await cdp.send("Profiler.start"); });
    await p.exposeFunction("profStop", async () => { const { profile } = await cdp.send("Profiler.stop");
      const self = new Map(); const dt = profile.timeDeltas; const byId = new Map(profile.nodes.map((n) => [n.id, n])); let total = 0;
      profile.samples.forEach((s, i) => { const n = byId.get(s); const k = `${n.callFrame.functionName || "(anon)"} ${n.callFrame.url.split("/").pop()}`; self.set(k, (self.get(k) || 0) + (dt[i] || 0)); total += dt[i] || 0; });
      console.log(`profile total ${(total / 1000).toFixed(0)} ms`);
      for (const [k, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)) console.log(`${(us / 1000).toFixed(1).padStart(8)} ms  ${k.slice(0, 140)}`); });
    const r = await p.evaluate(async ({ url, token }) => {
      const open = async (name) => {
        const f = await window.client.FolioReplica.open({ url, token, name, autoSync: false, compress: false });
        f.spent = {};
        const wrap = (obj, name, label) => { const g = obj[name].bind(obj); obj[name] = async (...a) => { const t = performance.now(); try { return await g(...a); } finally { f.spent[label] = (f.spent[label] || 0) + performance.now() - t; } }; };
        { const g = f.store.commit.bind(f.store); f.store.commit = async (c) => { const t = performance.now(); try { return await g(c); } finally { const k = c.outboxDeleteRange ? "idb commit (outbox acked)" : c.meta && !c.ops ? "idb commit (meta)" : "idb commit"; f.spent[k] = (f.spent[k] || 0) + performance.now() - t; } }; } wrap(f.store, "outbox", "idb outbox"); wrap(f.remote, "pull", "http pull"); wrap(f.remote, "push", "http push"); wrap(f.store, "loadInput", "idb load");
        if (f.identity) wrap(f.identity, "sign", "sign"); const core = f.core; for (const m of ["integrate", "prepare", "integratePrepared", "load"]) { const g = core[m].bind(core); core[m] = (...a) => { const t = performance.now(); try { return g(...a); } finally { f.spent["wasm " + m] = (f.spent["wasm " + m] || 0) + performance.now() - t; } }; }
        return f;
      };
      const a = await open("a"); const b = await open("b");
      const doc = await a.create("folio/todo-list", "sync");
      await a.sync(); await b.sync();
      for (const [f, who] of [[a, "a"], [b, "b"]]) for (let i = 0; i < 5000; i += 250) { const batch = []; for (let k = i; k < i + 250; k++) batch.push({ type: "ADD_TODO", input: { id: `${who}${k % 400}`, title: `${who} ${k}` } }); await f.apply(doc.id, batch); }
      a.spent = {}; b.spent = {};
      const out = [];
      const t0 = performance.now();
      for (const [f, name] of [[a, "a"], [b, "b"], [a, "a"]]) {
        f.spent = {}; const c0 = await window.serverCpu(); const t = performance.now();
        if (name === "b" && window.PROF) await window.profStart();
        const rep = await f.sync();
        if (name === "b" && window.PROF) await window.profStop();
        out.push(`${name}: pushed ${rep.pushed} pulled ${rep.pulled} in ${(performance.now() - t).toFixed(0)} ms (server CPU ${(await window.serverCpu()) - c0}) ${JSON.stringify(Object.fromEntries(Object.entries(f.spent).map(([k, v]) => [k, Math.round(v)])))}`);
      }
      out.push(`total ${(performance.now() - t0).toFixed(0)} ms`);
      await a.close(); await b.close();
      return out.join("\n");
    }, { url: server.url, token: server.token });
    console.log(r);
    await p.close(); await server.close();
  }
} finally { await br.close(); rmSync(site, { recursive: true, force: true }); }
