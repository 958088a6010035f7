/** Loads folio-core's WebAssembly build (folio-wasm) once per page or worker. */
import init, {
  initSync,
  ReplicaCore,
  base64url,
  canonicalJson,
  checkChain,
  conflicts as wasmConflicts,
  foldLogs,
  replicaIdOf,
  signatureChecks,
  signedEntries,
  signingBatch,
  valueHash,
} from "../wasm-pkg/folio_wasm.js";

export { ReplicaCore, canonicalJson, checkChain, wasmConflicts, foldLogs, valueHash };
export { base64url, replicaIdOf, signatureChecks, signedEntries, signingBatch };

/** Where the `.wasm` comes from: a URL (default: `folio-client.wasm` beside the module), its bytes, or a module. */
export type WasmSource = URL | string | ArrayBuffer | Uint8Array | WebAssembly.Module;

let ready: Promise<void> | null = null;

/** Loads the WebAssembly core (once). Node: a `file:` URL or the bytes. */
export function loadWasm(source?: WasmSource): Promise<void> {
  if (ready) return ready;
  ready = (async () => {
    if (source instanceof WebAssembly.Module || source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
      initSync({ module: source as BufferSource });
      return;
    }
    const url = source === undefined ? new URL("./folio-client.wasm", import.meta.url) : new URL(String(source));
    if (url.protocol === "file:") {
      // Node (tests, tools): read the file. The specifier is a variable so that bundlers leave it alone.
      const specifier = "node:fs/promises";
      const fs = (await import(specifier)) as { readFile(path: URL): Promise<Uint8Array> };
      initSync({ module: await fs.readFile(url) });
      return;
    }
    await init({ module_or_path: url });
  })().then(warmUp);
  ready.catch(() => {
    ready = null;
  });
  return ready;
}

/**
 * Runs what opening a document runs (create, apply, keyframe, load, document) once on a throwaway core. Chromium
 * compiles a WebAssembly function on its first call: without this, the first document a page opens pays for
 * compiling everything its fold touches (tens of milliseconds, more than the fold). Done here, it is part of
 * loading the module, once per page or worker.
 */
function warmUp(): void {
  try {
    const core = new ReplicaCore("warm-up", 1, 2);
    // An answer's JSON, then its operation texts, then their entry texts (one unit: see folio.ts `withTexts`).
    const texts = (answer: string) => {
      const [head, ...rest] = answer.split("\n");
      const { count } = JSON.parse(head ?? "") as { count: number };
      return rest.slice(0, count).join(",");
    };
    const created = core.create("folio/todo-list", "warm-up", "", "");
    const id = (JSON.parse(created.slice(0, created.indexOf("\n"))) as { documentId: string }).documentId;
    const applied = core.apply(
      id,
      "main",
      JSON.stringify([{ type: "ADD_TODO", input: { id: "a", title: "a" } }, { type: "UPDATE_TODO", input: { id: "a", done: true } }]),
    );
    const input = `{"id":"${id}","branch":"main","documentOps":[${texts(created)}],"keyframe":null,"globalOps":[${texts(applied)}],"localOps":[]}`;
    const keyframe = core.keyframe(id, "main");
    for (const text of [input, input.replace(/"keyframe":null,"globalOps":\[.*\],"localOps"/, `"keyframe":${keyframe},"globalOps":[],"localOps"`)]) {
      const again = new ReplicaCore("warm-up", 3, 4);
      again.load(text);
      JSON.parse(again.document(id, "main"));
      again.free();
    }
    core.free();
  } catch {
    // Only a warm-up: the real calls report their own errors.
  }
}

/** A wasm answer: the value, or `{error: {code, message}}`. */
export interface WasmFailure {
  error: { code: string; message: string; actionIndex?: number };
}

export function isFailure(v: unknown): v is WasmFailure {
  return typeof v === "object" && v !== null && "error" in v && typeof (v as WasmFailure).error === "object";
}
