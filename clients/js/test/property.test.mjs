// Randomised schedules: browser replicas (fake-indexeddb, the WebAssembly core) act offline on shared documents,
// sync with a real `folio serve` in random order (compressing or not), and restart (close and reopen on their
// database). After everyone syncs, every replica and the server have the same state hashes, and every action
// acknowledged locally is in the server's state (or compressed away by its author).
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Folio } from "../dist/folio-client.js";
import { WASM, api, startServer } from "./helpers.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const ids = ["a", "b", "c"];
const todoAction = fc.oneof(
  { weight: 4, arbitrary: fc.record({ type: fc.constant("ADD_TODO"), input: fc.record({ id: fc.constantFrom(...ids), title: fc.constantFrom("one", "two", "") }) }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant("UPDATE_TODO"), input: fc.record({ id: fc.constantFrom(...ids), done: fc.boolean() }) }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant("DELETE_TODO"), input: fc.record({ id: fc.constantFrom(...ids) }) }) },
  { weight: 1, arbitrary: fc.constant({ type: "CLEAR_DONE", input: {} }) },
);
const jsonAction = fc.oneof(
  fc.record({ type: fc.constant("SET"), input: fc.record({ path: fc.constantFrom("/a", "/b", "/m/x"), value: fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string({ maxLength: 3 })) }) }),
  fc.record({ type: fc.constant("INSERT"), input: fc.record({ path: fc.constant("/list"), index: fc.constant(0), value: fc.integer({ min: 0, max: 9 }) }) }),
  fc.record({ type: fc.constant("REMOVE"), input: fc.record({ path: fc.constant("/list"), index: fc.constant(0) }) }),
  fc.record({ type: fc.constant("DELETE"), input: fc.record({ path: fc.constantFrom("/a", "/b") }) }),
);

const step = (n) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.record({ kind: fc.constant("act"), replica: fc.nat(n - 1), doc: fc.constant(0), action: todoAction }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("act"), replica: fc.nat(n - 1), doc: fc.constant(1), action: jsonAction }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("sync"), replica: fc.nat(n - 1), compress: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart"), replica: fc.nat(n - 1) }) },
  );

const schedule = fc.integer({ min: 2, max: 3 }).chain((n) => fc.record({ n: fc.constant(n), steps: fc.array(step(n), { minLength: 5, maxLength: 30 }) }));

let run = 0;
test("browser replicas and the server converge whatever the schedule", async () => {
  await fc.assert(
    fc.asyncProperty(schedule, async ({ n, steps }) => {
      run++;
      const dbs = Array.from({ length: n }, () => new IDBFactory());
      const open = (i, compress = true) =>
        Folio.open({ url: server.url, token: server.token, name: `p${run}-${i}`, indexedDB: dbs[i], wasm: WASM, autoSync: false, compress });
      const replicas = [];
      for (let i = 0; i < n; i++) replicas.push(await open(i));
      try {
        const docs = [
          (await replicas[0].create("folio/todo-list", "todos")).id,
          (await replicas[0].create("folio/json", "json")).id,
        ];
        await replicas[0].apply(docs[1], [{ type: "SET", input: { path: "/list", value: [1, 2] } }]);
        for (const r of replicas) await r.sync();
        for (const s of steps) {
          const r = replicas[s.replica];
          if (s.kind === "act") {
            try {
              await r.apply(docs[s.doc], [s.action]);
            } catch (e) {
              if (!e.code || e.code === "CORRUPT_RECORD" || e.code.startsWith("STORAGE")) throw e; // refusals are fine
            }
          } else if (s.kind === "sync") {
            await r.close();
            replicas[s.replica] = await open(s.replica, s.compress);
            await replicas[s.replica].sync();
          } else {
            await r.close();
            replicas[s.replica] = await open(s.replica);
          }
        }
        for (let round = 0; round < 2; round++) for (const r of replicas) await r.sync();
        for (const id of docs) {
          const served = await api(server, `/v1/documents/${id}`);
          for (const r of replicas) {
            const mine = await r.get(id);
            assert.equal(mine.stateHash, served.stateHash, `replica ${r.replicaId} on ${id}`);
            assert.equal(r.status.pending, 0);
          }
        }
      } finally {
        for (const r of replicas) await r.close();
      }
    }),
    { numRuns: Number(process.env.FOLIO_PROPERTY_RUNS || 25), verbose: 1 },
  );
  assert.ok(run >= Number(process.env.FOLIO_PROPERTY_RUNS || 25), `${run} schedules ran`);
});
