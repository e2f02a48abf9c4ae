// omnidesk's service worker: what makes the inbox installable as an app, and
// what shows a notification's click back into the inbox. It caches nothing:
// every page and API call goes to the server as before.
'use strict';
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', ev => ev.waitUntil(self.clients.claim()));
self.addEventListener('fetch', () => { /* the network, as without a worker */ });
self.addEventListener('notificationclick', ev => {
  ev.notification.close();
  const url = (ev.notification.data && ev.notification.data.url) || '/inbox';
  ev.waitUntil(self.clients.matchAll({ type: 'window' }).then(list => {
    for (const c of list) if ('focus' in c) { c.navigate(url); return c.focus(); }
    return self.clients.openWindow(url);
  }));
});
