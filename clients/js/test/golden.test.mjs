// Golden tests: histories made by Rust replicas (crates/folio-wasm/tests/golden.rs writes them, and checks them
// natively) folded and replayed by the WebAssembly build must give byte-identical documents, operations and hashes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { ReplicaCore, foldLogs, loadWasm, canonicalJson, valueHash } from "../dist/folio-client.js";

await loadWasm(new URL("../dist/folio-client.wasm", import.meta.url));
const fixture = JSON.parse(readFileSync(new URL("./golden/histories.json", import.meta.url), "utf8"));

const input = (id, documentOps, globalOps, localOps) =>
  `{"id":"${id}","branch":"main","documentOps":[${documentOps.join(",")}],"keyframe":null,"globalOps":[${globalOps.join(",")}],"localOps":[${localOps.join(",")}]}`;

test("the fixture has rebases, refused actions and compressions of both models", () => {
  const all = fixture.histories;
  assert.ok(all.some((h) => h.name.includes("folio/todo-list")) && all.some((h) => h.name.includes("folio/json")));
  const ops = all.flatMap((h) => [...h.globalOps, ...h.documentOps].map((t) => JSON.parse(t)));
  assert.ok(ops.some((op) => op.skip > 0), "a skip");
  assert.ok(ops.some((op) => op.error !== null), "a refused action");
  assert.ok(all.some((h) => h.steps.some((s) => s.kind === "compress")), "a compression");
});

for (const h of fixture.histories) {
  test(`fold: ${h.name} (${h.id})`, () => {
    const text = foldLogs(input(h.id, h.documentOps, h.globalOps, h.localOps));
    assert.equal(text, h.document, "byte-identical document JSON");
    assert.ok(text.endsWith(`"stateHash":"${h.stateHash}"}`));
  });

  test(`replay: ${h.name} (${h.id}), ${h.steps.length} steps`, () => {
    for (const step of h.steps) {
      const log = step.scope === "global" ? h.globalOps : h.documentOps;
      const core = new ReplicaCore("golden", 0, 7);
      const loaded = JSON.parse(
        step.scope === "global"
          ? core.load(input(h.id, h.documentOps, h.globalOps.slice(0, step.at), []))
          : core.load(input(h.id, h.documentOps.slice(0, step.at), [], [])),
      );
      assert.deepEqual(loaded, { loaded: true });
      const text = step.kind === "integrate" ? core.integrate(step.entries) : core.compress(h.id, "main", JSON.stringify(step.ids));
      // The answer's JSON, then per appended unit its operation texts and (own actions: compress) its entry texts.
      const [head, ...texts] = text.split("\n");
      const answer = JSON.parse(head);
      assert.equal(answer.error, undefined, JSON.stringify(answer.error));
      const produced = [];
      let k = 0;
      for (const a of answer.appended) {
        produced.push(...texts.slice(k, k + a.count));
        k += a.count * (a.operations ? 2 : 1);
      }
      assert.equal(k, texts.length, "every text after the answer belongs to an operation");
      assert.deepEqual(produced, log.slice(step.at, step.at + step.count), `${step.kind} of ${step.scope} at ${step.at}`);
      core.free();
      if (step.kind === "integrate") {
        // The pull path: the same entries as bytes, read once by `prepare`, integrated by `integratePrepared`.
        const again = new ReplicaCore("golden", 0, 7);
        again.load(
          step.scope === "global"
            ? input(h.id, h.documentOps, h.globalOps.slice(0, step.at), [])
            : input(h.id, h.documentOps.slice(0, step.at), [], []),
        );
        again.prepare(new TextEncoder().encode(step.entries));
        assert.equal(again.integratePrepared(new Uint8Array(0)), text, "prepare + integratePrepared answers as integrate");
        again.free();
      }
    }
  });
}

test("canonical JSON and value hashes are folio-core's", () => {
  assert.equal(canonicalJson('{"b":1.0,"a":[{"d":1e300,"c":null}]}'), '{"a":[{"c":null,"d":1e+300}],"b":1.0}');
  assert.match(valueHash('{"b":1,"a":2}'), /^[0-9a-f]{64}$/);
  assert.equal(valueHash('{"b":1,"a":2}'), valueHash('{"a":2,"b":1}'));
});

test("integratePrepared answers a named error when nothing or something unreadable was prepared", () => {
  const core = new ReplicaCore("golden", 0, 7);
  const error = (text) => JSON.parse(text.split("\n")[0]).error;
  assert.equal(error(core.integratePrepared(new Uint8Array(0))).code, "INVALID_REQUEST");
  assert.equal(core.prepare(new Uint8Array([0x5b, 0xff, 0x5d])).length, 0, "no checks for bytes that are not UTF-8");
  assert.match(error(core.integratePrepared(new Uint8Array(0))).message, /not UTF-8/);
  core.prepare(new TextEncoder().encode('[{"documentId": 1}]'));
  assert.equal(error(core.integratePrepared(new Uint8Array(0))).code, "INVALID_REQUEST");
  // Taken once: the next call has nothing prepared.
  assert.match(error(core.integratePrepared(new Uint8Array(0))).message, /nothing is prepared/);
  core.free();
});
