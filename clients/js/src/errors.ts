/** The error of every failing call: a stable `code` and a human `message`. */
export class FolioError extends Error {
  /**
   * `OFFLINE` (the server cannot be reached), `UNAUTHORIZED` (a bad or stale token: sync stops), `FORBIDDEN`,
   * `QUOTA_EXCEEDED` (the browser refused to store), `CORRUPT_RECORD` (a stored record does not read back or breaks
   * its hash chain), `SERVER_ERROR` (the server answered 5xx), `DOCUMENT_NOT_FOUND`, `DOCUMENT_DELETED`,
   * `UNKNOWN_DOCUMENT_TYPE`, `INVALID_REQUEST`, `CLOSED`, the server's codes (`http.md`), and the reducers' codes
   * (`EMPTY_TITLE`, `INDEX_OUT_OF_BOUNDS`, …).
   */
  readonly code: string;
  /** For a refused action: its position in the `apply` call. */
  readonly actionIndex: number | undefined;
  /** For an error answered by the server: the HTTP status. */
  readonly status: number | undefined;

  constructor(code: string, message: string, extra: { actionIndex?: number; status?: number; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "FolioError";
    this.code = code;
    this.actionIndex = extra.actionIndex;
    this.status = extra.status;
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** A browser storage error as a FolioError (`QUOTA_EXCEEDED` when the browser refused to store). */
export function storageError(e: unknown, what: string): FolioError {
  if (e instanceof FolioError) return e;
  const name = (e as { name?: string } | null)?.name ?? "";
  const message = (e as { message?: string } | null)?.message ?? String(e);
  if (name === "QuotaExceededError") {
    return new FolioError("QUOTA_EXCEEDED", `${what}: the browser refused to store (${message})`, { cause: e });
  }
  return new FolioError("STORAGE_ERROR", `${what}: ${name ? name + ": " : ""}${message}`, { cause: e });
}
