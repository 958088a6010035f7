// The app's service worker: the app shell from a cache named after the app's version, so the page opens with no
// network at all. The API (`/v1/…`) is never cached: the replica's data lives in IndexedDB, owned by the replica
// (SharedWorker or leader tab), and its pending actions never pass through here.
//
// Updates: a new version installs beside the old one (its own cache) and waits; the page offers "Update", and once
// no write of the tab is in flight it asks this worker to skip waiting. Activated, it drops the old caches and takes
// the open tabs, which reload at their own safe point (see src/app.ts and README.md).
declare const APP_VERSION: string;
declare const APP_ASSETS: string[];

interface ExtendableEvent extends Event {
  waitUntil(p: Promise<unknown>): void;
}
interface FetchEvent extends ExtendableEvent {
  request: Request;
  respondWith(r: Promise<Response> | Response): void;
}
interface SW {
  registration: { active: unknown };
  skipWaiting(): Promise<void>;
  clients: { claim(): Promise<void> };
  addEventListener(type: "install" | "activate", l: (e: ExtendableEvent) => void): void;
  addEventListener(type: "fetch", l: (e: FetchEvent) => void): void;
  addEventListener(type: "message", l: (e: MessageEvent) => void): void;
  location: Location;
}
const sw = globalThis as unknown as SW;
const CACHE = `web-todo-${APP_VERSION}`;

sw.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      await cache.addAll(APP_ASSETS.map((a) => new Request(a, { cache: "reload" })));
      // The first version takes over at once; later ones wait for the page to say when (SKIP_WAITING).
      if (!sw.registration.active) await sw.skipWaiting();
    })(),
  );
});

sw.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key.startsWith("web-todo-") && key !== CACHE) await caches.delete(key);
      await sw.clients.claim();
    })(),
  );
});

sw.addEventListener("message", (event) => {
  if ((event.data as { type?: string } | null)?.type === "SKIP_WAITING") void sw.skipWaiting();
});

sw.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== sw.location.origin || url.pathname.startsWith("/v1/")) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      // Navigations get the shell (the app reads its state from the URL); the worker's `?v=` is ignored.
      const key = request.mode === "navigate" ? "/index.html" : request;
      const hit = await cache.match(key, { ignoreSearch: true });
      if (hit) return hit;
      return fetch(request);
    })(),
  );
});
