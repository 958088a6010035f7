/**
 * folio-client: a replica of folio documents in the browser, folded by folio-core compiled to WebAssembly, stored in
 * IndexedDB, synced with `folio serve`. Contract: `docs/spec/js-client.md`.
 */
// The class apps use: one replica per origin and name shared by the tabs (a SharedWorker, or a leader tab).
export { Folio } from "./tabs.js";
export type { FolioOptions, SharedMode } from "./tabs.js";
// The replica itself (what the SharedWorker or the leader tab runs; Node and tests may use it directly).
export { Folio as FolioReplica } from "./folio.js";
export type { ApplyResult, OpenOptions } from "./folio.js";
export { FolioError } from "./errors.js";
export type * from "./types.js";
export { loadWasm } from "./wasm.js";
export type { WasmSource } from "./wasm.js";
/** folio-core's pure functions, for tests and tools: canonical JSON, hashes, folds. */
export { canonicalJson, checkChain, foldLogs, valueHash, ReplicaCore } from "./wasm.js";
/** The host's verdicts on a pull's signatures (WebCrypto, split with a worker for large batches), for tests and tools. */
export { verifySignatures } from "./identity.js";
