/** Loads folio-core's WebAssembly build (folio-wasm) once per page or worker. */
import init, {
  initSync,
  ReplicaCore,
  canonicalJson,
  checkChain,
  conflicts as wasmConflicts,
  entryUnits,
  foldLogs,
  valueHash,
} from "../wasm-pkg/folio_wasm.js";

export { ReplicaCore, canonicalJson, checkChain, wasmConflicts, entryUnits, foldLogs, valueHash };

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
  })();
  ready.catch(() => {
    ready = null;
  });
  return ready;
}

/** A wasm answer: the value, or `{error: {code, message}}`. */
export interface WasmFailure {
  error: { code: string; message: string; actionIndex?: number };
}

export function isFailure(v: unknown): v is WasmFailure {
  return typeof v === "object" && v !== null && "error" in v && typeof (v as WasmFailure).error === "object";
}
