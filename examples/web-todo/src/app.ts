// folio todos: a todo list that uses nothing but folio-client. Every tab of this origin shares one replica (a
// SharedWorker, or a leader tab); it works offline and syncs with the `folio serve` that serves the page.
import { Folio, FolioError, type FolioDocument, type SharedMode, type Status } from "folio-client";

declare const APP_VERSION: string;

interface Item {
  title: string;
  done: boolean;
}
interface TodoState {
  items: Record<string, Item>;
}

const TYPE = "folio/todo-list";
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

// ---- the service worker: the app shell offline, and updates at a safe point ----

/** Writes this tab has started and not seen resolve: an update waits until there are none. */
let inFlight = 0;
const idleWaiters: (() => void)[] = [];
function track<T>(p: Promise<T>): Promise<T> {
  inFlight++;
  return p.finally(() => {
    if (--inFlight === 0) idleWaiters.splice(0).forEach((w) => w());
  });
}
const idle = () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => idleWaiters.push(r)));

async function registerServiceWorker(): Promise<void> {
  if (!("serviceWorker" in navigator) || new URLSearchParams(location.search).has("nosw")) return;
  const reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  const offer = (waiting: ServiceWorker | null) => {
    if (!waiting || !navigator.serviceWorker.controller) return;
    $("update").hidden = false;
    $("update-now").onclick = async () => {
      // Safe point: no write of this tab in flight. Everything `apply` resolved is already in IndexedDB (owned by
      // the replica, never by the service worker's caches), so activating the new version loses nothing.
      await idle();
      waiting.postMessage({ type: "SKIP_WAITING" });
    };
  };
  offer(reg.waiting);
  reg.addEventListener("updatefound", () => {
    const installing = reg.installing;
    installing?.addEventListener("statechange", () => {
      if (installing.state === "installed") offer(reg.waiting);
    });
  });
  let reloading = false;
  navigator.serviceWorker.addEventListener("controllerchange", async () => {
    if (reloading) return;
    reloading = true;
    await idle();
    location.reload();
  });
  // Look for a new version now and then (and at every load).
  setInterval(() => void reg.update().catch(() => undefined), 60 * 60 * 1000);
}

// ---- the token ----

function takeToken(): string | null {
  const hash = new URLSearchParams(location.hash.slice(1));
  const fromHash = hash.get("token");
  if (fromHash) {
    localStorage.setItem("folio-token", fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return localStorage.getItem("folio-token");
}

function askToken(): Promise<string> {
  $("login").hidden = false;
  return new Promise((resolve) => {
    $("login").onsubmit = (e) => {
      e.preventDefault();
      const token = $<HTMLInputElement>("token").value.trim();
      if (!token) return;
      localStorage.setItem("folio-token", token);
      $("login").hidden = true;
      resolve(token);
    };
  });
}

// ---- rendering ----

function newId(): string {
  // Sorts by creation time (items are a map by id in the document): base-36 milliseconds, then randomness.
  const r = new Uint8Array(4);
  crypto.getRandomValues(r);
  return `${Date.now().toString(36).padStart(9, "0")}-${Array.from(r, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

function showError(e: unknown): void {
  const box = $("error");
  box.hidden = false;
  box.textContent = e instanceof FolioError ? `${e.code}: ${e.message}` : String(e);
  setTimeout(() => (box.hidden = true), 6000);
}

function renderStatus(s: Status): void {
  const badge = $("badge");
  let state: string;
  let text: string;
  if (s.error && (s.error.code === "UNAUTHORIZED" || s.error.code === "FORBIDDEN")) {
    state = "error";
    text = s.error.code === "UNAUTHORIZED" ? "token refused" : "forbidden";
  } else if (s.pending > 0) {
    state = "pending";
    text = `${s.pending} pending${s.online ? "" : " · offline"}`;
  } else if (s.online) {
    state = "synced";
    text = "synced";
  } else {
    state = "offline";
    text = "offline";
  }
  badge.dataset.state = state;
  badge.textContent = text;
  badge.title = s.error ? `${s.error.code}: ${s.error.message}` : "";
  $("synced-at").textContent = s.lastSyncAt ? `synced ${new Date(s.lastSyncAt).toLocaleTimeString()}` : "never synced";
}

async function main(): Promise<void> {
  void registerServiceWorker().catch((e) => console.warn("service worker", e));
  $("version").textContent = APP_VERSION;
  const token = takeToken() ?? (await askToken());
  const params = new URLSearchParams(location.search);
  const folio = await Folio.open({
    url: location.origin,
    token,
    name: params.get("replica") ?? "web-todo",
    shared: (params.get("shared") as SharedMode | null) ?? "auto",
    // A new app version starts a new worker, which waits for the old one (and its tabs) to let go of the replica.
    workerUrl: `/folio-worker.js?v=${APP_VERSION}`,
  });
  (window as unknown as { folio: Folio }).folio = folio;
  $("replica").textContent = folio.replicaId;
  const showMode = () => ($("mode").textContent = folio.mode);
  showMode();
  folio.on("status", (s) => {
    renderStatus(s);
    showMode();
    if (s.error?.code === "UNAUTHORIZED") offerNewToken();
  });
  // A refused token stops sync: the page asks for another one (and reloads with it; the replica keeps its data).
  const offerNewToken = () => {
    if (!$("login").hidden) return;
    void askToken().then(() => location.reload());
  };
  if (folio.status.error?.code === "UNAUTHORIZED") offerNewToken();
  renderStatus(folio.status);

  // One list per replica name: the first there is (after a first sync when there is a server), made when none is.
  const id = await navigator.locks.request("web-todo:pick-list", async () => {
    const first = async () => (await folio.list({ type: TYPE })).sort((a, b) => a.id.localeCompare(b.id))[0];
    let found = await first();
    if (!found) {
      await Promise.race([folio.sync().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
      found = await first();
    }
    return found?.id ?? (await folio.create(TYPE, "Todos")).id;
  });
  document.body.dataset.doc = id;

  let doc: FolioDocument<TodoState> | null = null;
  let editing: string | null = null;
  const render = () => {
    if (!doc || editing) return;
    const items = Object.entries(doc.state.global.items);
    const list = $("items");
    list.replaceChildren(
      ...items.map(([key, item]) => {
        const li = document.createElement("li");
        li.dataset.id = key;
        li.className = item.done ? "done" : "";
        const box = document.createElement("input");
        box.type = "checkbox";
        box.className = "toggle";
        box.checked = item.done;
        box.onchange = () => void track(folio.apply(id, [{ type: "UPDATE_TODO", input: { id: key, done: box.checked } }])).catch(showError);
        const title = document.createElement("span");
        title.className = "title";
        title.textContent = item.title;
        title.ondblclick = () => startEdit(li, key, item.title);
        const del = document.createElement("button");
        del.className = "delete";
        del.type = "button";
        del.title = "Delete";
        del.textContent = "×";
        del.onclick = () => void track(folio.apply(id, [{ type: "DELETE_TODO", input: { id: key } }])).catch(showError);
        li.append(box, title, del);
        return li;
      }),
    );
    const open = items.filter(([, i]) => !i.done).length;
    $("count").textContent = `${open} left of ${items.length}`;
    $("empty").hidden = items.length > 0;
    void refreshConflicts();
  };
  const startEdit = (li: HTMLElement, key: string, old: string) => {
    editing = key;
    const input = document.createElement("input");
    input.className = "edit";
    input.value = old;
    li.querySelector(".title")?.replaceWith(input);
    input.focus();
    input.select();
    const finish = (save: boolean) => {
      if (editing !== key) return;
      editing = null;
      const title = input.value.trim();
      if (save && title !== old) {
        void track(folio.apply(id, [{ type: "UPDATE_TODO", input: { id: key, title } }])).catch(showError);
      }
      render();
    };
    input.onkeydown = (e) => {
      if (e.key === "Enter") finish(true);
      else if (e.key === "Escape") finish(false);
    };
    input.onblur = () => finish(true);
  };
  let conflictsShown = -1;
  const refreshConflicts = async () => {
    const conflicts = await folio.conflicts(id);
    if (conflicts.length === conflictsShown) return;
    conflictsShown = conflicts.length;
    $("conflicts-box").hidden = conflicts.length === 0;
    $("conflict-count").textContent = String(conflicts.length);
    $("conflicts").replaceChildren(
      ...conflicts.map((c) => {
        const li = document.createElement("li");
        const input = c.operation.action.input as { id?: string; title?: string } | null;
        li.textContent = `${c.operation.action.type} ${input?.title ?? input?.id ?? ""}: ${c.reason}`;
        return li;
      }),
    );
  };

  folio.subscribe<TodoState>(id, (d) => {
    doc = d;
    render();
  });
  doc = await folio.get<TodoState>(id);
  render();

  $("add").onsubmit = (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>("title");
    const title = input.value.trim();
    if (!title) return;
    input.value = "";
    void track(folio.apply(id, [{ type: "ADD_TODO", input: { id: newId(), title } }])).catch(showError);
  };
  $("clear").onclick = () => void track(folio.apply(id, [{ type: "CLEAR_DONE", input: {} }])).catch(showError);
  $("app").hidden = false;
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  console.error(e);
  showError(e);
  $("badge").dataset.state = "error";
  $("badge").textContent = "failed";
});
