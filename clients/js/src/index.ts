/**
 * folio-client: a replica of folio documents in the browser, folded by folio-core compiled to WebAssembly, stored in
 * IndexedDB, synced with `folio serve`. Contract: `docs/spec/js-client.md`.
 */
export { Folio } from "./folio.js";
export type { ApplyResult, OpenOptions } from "./folio.js";
export { FolioError } from "./errors.js";
export type * from "./types.js";
export { loadWasm } from "./wasm.js";
export type { WasmSource } from "./wasm.js";
/** folio-core's pure functions, for tests and tools: canonical JSON, hashes, folds. */
export { canonicalJson, checkChain, foldLogs, valueHash, ReplicaCore } from "./wasm.js";
