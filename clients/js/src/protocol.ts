/**
 * The messages between a tab and the replica's host (a SharedWorker, or the leader tab elected with Web Locks).
 *
 * A tab says `hello` (with the options it opened with), then `call`s the replica's methods and `sub`scribes to
 * documents; the host answers each call (`ret`/`err` with the call's number, and the status when the call changed
 * it), then sends `doc` to the tabs that subscribed to a document the call changed and `status` to every tab (both
 * in tasks after the answer: an `apply` resolves without waiting for the document's text to be made, for any tab's
 * subscriber or for a second message). Everything is structured-cloneable.
 * Documents travel as their JSON text to tabs that say `texts` in `hello` (a structured clone of a document of a
 * few hundred items cost 5 to 40 ms in Chromium, the `JSON.parse` of its text 1 ms), otherwise as the objects `get`
 * answers; their hashes are computed in the host, never in the tab.
 */
import type { DocumentHeader, FolioDocument, Status } from "./types.js";

/** Bumped when a message changes shape: a tab and a host of different versions refuse each other. */
export const PROTOCOL = 1;

/** The replica's methods a tab may call through the host. */
export type Method = "create" | "apply" | "get" | "sync" | "conflicts" | "list" | "repair" | "reconnect";
export const METHODS: readonly Method[] = ["create", "apply", "get", "sync", "conflicts", "list", "repair", "reconnect"];

/** The options a tab sends in `hello` (those of `Folio.open` that can cross to another context). */
export interface HostOptions {
  url?: string;
  token?: string;
  name: string;
  autoSync?: boolean;
  live?: boolean;
  compress?: boolean;
  pushEntries?: number;
  pullEntries?: number;
  /** An absolute URL of the `.wasm` (default: beside the worker's script). */
  wasm?: string;
}

export interface WireError {
  code: string;
  message: string;
  actionIndex?: number;
  status?: number;
}

export type ToHost =
  /** `texts`: the tab reads documents as JSON text (`j` in `ret` and `doc`) and the status in answers (`s`: no
   * `status` message follows for it); a host that does not know it sends objects (`v`) and `status` messages,
   * which the tab reads too. */
  | { t: "hello"; v: number; h: number; tab: string; options: HostOptions; texts?: boolean }
  /** `r`: sent again to a new host (the one it was sent to went away without answering). */
  | { t: "call"; n: number; m: Method; a: unknown[]; r?: boolean }
  | { t: "sub"; doc: string }
  | { t: "unsub"; doc: string }
  | { t: "bye" };

export type ToTab =
  | { t: "ready"; v: number; h: number; host: string; replicaId: string; status: Status }
  | { t: "refused"; h: number; error: WireError }
  /** `s`: the status after the call, when it changed since the tab last heard it (the tab sees it before the call
   * resolves; a `status` message with the same follows only for tabs that did not say `texts`). `j`: the answer as
   * JSON text, to a tab that said `texts` (`get` and `apply`). */
  | { t: "ret"; n: number; v: unknown; s?: Status; j?: string }
  | { t: "err"; n: number; e: WireError; s?: Status }
  | { t: "status"; s: Status }
  /** A document as an object (`v`) or, to a tab that said `texts`, as its JSON text (`j`). */
  | { t: "doc"; doc: string; v?: FolioDocument; j?: string };

/** What crosses a BroadcastChannel in leader mode: a message to the host from a tab, to one tab from the host, or
 * the announcement of a new leader. */
export type OnChannel =
  | { k: "host"; from: string; m: ToHost }
  | { k: "tab"; to: string; m: ToTab }
  | { k: "leader"; leader: string };

/** Results the tab turns back into typed values. */
export type Headers = DocumentHeader[];
