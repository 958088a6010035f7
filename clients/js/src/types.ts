/** Wire shapes (`docs/http.md`, folio-sync's protocol types). Operations and actions stay JSON text inside the
 * client: a number read by `JSON.parse` and written back by `JSON.stringify` may change its text, and so its hash. */

export type Scope = "global" | "local" | "document";

/** A document's header, as `GET /v1/documents/{id}` answers it. */
export interface DocumentHeader {
  id: string;
  documentType: string;
  name: string;
  createdAtUtcIso: string;
  lastModifiedAtUtcIso: string;
  branch: string;
  revision: { global: number; local: number; document: number };
  deleted?: boolean;
  /** The principal that owns the document; absent on documents made before owners existed. */
  owner?: string;
  /** Who else may read or write it (`SET_GRANTS` in the document scope); absent when none. */
  grants?: Grant[];
}

/** A grant: `principal` (or `*`, everyone holding a token) may `access` the document. */
export interface Grant {
  principal: string;
  access: "read" | "write";
}

/** A document: header, state and the hash of its global state. */
export interface FolioDocument<G = unknown, L = unknown> {
  header: DocumentHeader;
  state: { global: G; local: L };
  stateHash: string;
}

/** An action as an app gives it. */
export interface ActionInput {
  type: string;
  input?: unknown;
  /** `global` when omitted; one scope per `apply`. */
  scope?: Scope;
}

/** A stored operation (parsed, for display). */
export interface Operation {
  id: string;
  index: number;
  skip: number;
  timestampUtcMs: string;
  hash: string;
  error: string | null;
  action: {
    id: string;
    type: string;
    input: unknown;
    scope: Scope;
    timestampUtcMs: string;
    counter?: number;
    replica?: string;
    context?: Record<string, string>;
  };
}

/** An action kept in a document's history but refused by its reducer in its merged position. */
export interface Conflict {
  scope: Scope;
  index: number;
  actionId: string;
  reason: string;
  operation: Operation;
}

/** `GET /v1/sync/info`. */
export interface RemoteInfo {
  replica: string;
  maxBodyBytes: number;
}

/** `POST /v1/sync/push` answer. */
export interface PushResponse {
  new: number;
  duplicates: number;
  rejected: RejectedAction[];
}

/** An action refused in its merged position, as sync reports it. */
export interface RejectedAction {
  documentId: string;
  actionId: string;
  reason: string;
}

/** What a replica's sync looks like now. */
export interface Status {
  /** The last exchange with the server succeeded (and, when live, the live connection is up). */
  online: boolean;
  /** Own actions not yet acknowledged by the server. */
  pending: number;
  /** When the last round succeeded (ms since the epoch). */
  lastSyncAt: number | null;
  /** Actions refused in their merged position, reported by sync since the replica was opened. */
  conflicts: number;
  /** Why sync is failing or stopped (`UNAUTHORIZED` stops it until `sync()` is called again; `FORBIDDEN`: a read
   * token, own actions wait in the outbox while the server's changes still come in). */
  error: { code: string; message: string } | null;
}

/** What one round moved. */
export interface SyncReport {
  remote: string;
  compressed: number;
  pushed: number;
  pushedNew: number;
  pulled: number;
  pulledNew: number;
  conflicts: RejectedAction[];
}
