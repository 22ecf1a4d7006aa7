// scopecast demo page: presence grouped by user and a shared list, live.
//
// Identity: POST /demo/token {"name"} (server in --demo mode), fetched again
// before every (re)connect, so a restarted server (new secret) is no problem.
// URL: ?name=ana joins at once, ?token=JWT uses that token as is, #lobby or
// #room:lobby picks the room scope.
//
// The list is kept in step with emit/event:
// - {t:'item', item} carries one item's whole state; every change bumps its
//   version `v` (ties broken by the writer's session `w`), and the higher
//   version wins, so applying messages twice or out of order is harmless.
//   Removed items stay as tombstones so that old copies cannot revive them.
// - The server keeps the room's recent events (demo mode: room:*, 1000
//   events / 1 hour), so a page subscribes with since {seq: 0}: a late
//   joiner rebuilds the list from that history, and a page whose connection
//   went away gets what it missed when it is back (scopecast.js recovers by
//   itself, also after a `dropped` notice).
// - Only when that is not possible (history exceeded, a restarted server:
//   the subscription's 'refetch') the page asks the open tabs:
//   {t:'sync', req, items} carries this tab's items and asks the others for
//   theirs; one of them answers with {t:'state', req, items} (each waits a
//   random moment and stays quiet if another answered first).
// The list is also cached in localStorage per room, so a lone tab keeps it
// across reloads. Other events of the room (e.g. the README's
// `curl -X POST /api/emit`) are listed under "Other events".

import { connect } from '/scopecast.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const NAME_KEY = 'scopecast-demo-name';
const MAX_ITEMS = 300;
const MAX_TOMBSTONES = 200;

const ui = {
  status: $('status'), statusText: $('status-text'), notice: $('notice'),
  room: $('room'), stack: $('stack'),
  join: $('join'), joinForm: $('join-form'), name: $('name'), random: $('random-name'),
  board: $('board'), addForm: $('add-form'), newItem: $('new-item'),
  items: $('items'), empty: $('empty'), counts: $('counts'),
  peopleCard: $('people-card'), people: $('people'), offline: $('offline'),
  activityCard: $('activity-card'), activity: $('activity'), online: $('online-count'), me: $('me'),
};

// ---- room -------------------------------------------------------------------

function roomScope() {
  let h = decodeURIComponent(location.hash.replace(/^#/, '')).trim();
  h = h.replace(/[^\x21-\x7e]/g, '').slice(0, 190);
  if (!h) h = 'lobby';
  return h.startsWith('room:') ? h : 'room:' + h;
}
const scope = roomScope();
ui.room.textContent = scope;
window.addEventListener('hashchange', () => location.reload());

// ---- avatars ----------------------------------------------------------------

function hashString(s) {
  let h = 2166136261; // FNV-1a
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return h >>> 0;
}
const PALETTE = ['#e5484d', '#f76b15', '#d6a100', '#46a758', '#12a594', '#0090ff', '#3e63dd',
  '#6e56cf', '#8e4ec6', '#d6409f', '#a18072', '#5b8a72', '#c2410c', '#0e7490'];
function colorOf(name) {
  if (!name) return '#8b8d98';
  return PALETTE[hashString(name) % PALETTE.length];
}
function initialsOf(name) {
  if (!name) return '?';
  const words = name.trim().split(/[\s._-]+/).filter(Boolean);
  const chars = (w) => Array.from(w);
  if (words.length >= 2) return (chars(words[0])[0] + chars(words[1])[0]).toUpperCase();
  return chars(words[0] || '?').slice(0, 2).join('').toUpperCase();
}
function avatar(name, tabs = 1, title = name) {
  const el = document.createElement('span');
  el.className = 'avatar';
  el.style.setProperty('--c', colorOf(name));
  el.textContent = initialsOf(name);
  el.title = title || 'anonymous';
  if (tabs > 1) {
    const b = document.createElement('span');
    b.className = 'badge';
    b.textContent = String(tabs);
    el.append(b);
  }
  return el;
}

const ADJ = ['Brave', 'Calm', 'Clever', 'Curious', 'Eager', 'Gentle', 'Happy', 'Jolly', 'Kind', 'Lucky', 'Mellow', 'Nimble', 'Quiet', 'Swift', 'Witty', 'Sunny'];
const ANIMALS = ['Otter', 'Fox', 'Panda', 'Heron', 'Lynx', 'Koala', 'Badger', 'Falcon', 'Marten', 'Puffin', 'Seal', 'Wombat', 'Ibex', 'Robin', 'Tapir', 'Yak'];
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const randomName = () => `${pick(ADJ)} ${pick(ANIMALS)}`;

// ---- notices ----------------------------------------------------------------

let noticeTimer = null;
function notice(text, { kind = 'info', ms = 0 } = {}) {
  clearTimeout(noticeTimer);
  ui.notice.textContent = text;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
  if (ms) noticeTimer = setTimeout(clearNotice, ms);
}
function clearNotice() {
  clearTimeout(noticeTimer);
  ui.notice.hidden = true;
  ui.notice.textContent = '';
}

// ---- list state ----------------------------------------------------------------

const items = new Map(); // id -> {id, text, done, deleted, v, w, by, at}
const cacheKey = 'scopecast-demo-items:' + scope;

function newer(a, b) {
  // true when item a should replace b
  if (!b) return true;
  if (a.v !== b.v) return a.v > b.v;
  return String(a.w) > String(b.w);
}
function validItem(it) {
  return it && typeof it.id === 'string' && it.id.length <= 64 && typeof it.text === 'string' &&
    Number.isFinite(it.v);
}
function merge(list) {
  let changed = false;
  for (const raw of list || []) {
    if (!validItem(raw)) continue;
    const it = {
      id: raw.id, text: raw.text.slice(0, 140), done: !!raw.done, deleted: !!raw.deleted,
      v: raw.v, w: String(raw.w ?? ''), by: raw.by == null ? null : String(raw.by).slice(0, 64),
      at: Number(raw.at) || 0,
    };
    if (newer(it, items.get(it.id))) {
      items.set(it.id, it);
      changed = true;
    }
  }
  if (changed) {
    saveCache();
    render();
  }
  return changed;
}
function snapshot() {
  const all = [...items.values()].sort((a, b) => b.at - a.at);
  const live = all.filter((i) => !i.deleted).slice(0, MAX_ITEMS);
  const dead = all.filter((i) => i.deleted).slice(0, MAX_TOMBSTONES);
  return live.concat(dead);
}
function saveCache() {
  try {
    localStorage.setItem(cacheKey, JSON.stringify(snapshot()));
  } catch { /* private mode, quota */ }
}
function loadCache() {
  try {
    const list = JSON.parse(localStorage.getItem(cacheKey) || '[]');
    if (Array.isArray(list)) merge(list);
  } catch { /* ignore */ }
}

function uid() {
  const a = new Uint8Array(8);
  crypto.getRandomValues(a);
  return Array.from(a, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- connection -------------------------------------------------------------

let client = null;
let sub = null;
let myName = null;
let fixedToken = params.get('token');
let anonymous = false;
let pendingSync = null; // req id of our last sync, until someone answers
const answered = new Set(); // sync reqs already answered by someone
let replayedUpTo = 0; // events up to this seq are history being replayed

async function getToken() {
  if (fixedToken) return fixedToken;
  const r = await fetch('/demo/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: myName }),
  });
  if (r.status === 404) {
    // Server not in --demo mode: look on anonymously (read-only).
    anonymous = true;
    notice('This server is not in demo mode (no /demo/token): you are connected anonymously and cannot edit.');
    return null;
  }
  if (!r.ok) throw new Error('token: HTTP ' + r.status);
  return (await r.json()).token;
}

function setStatus(status, info = {}) {
  ui.status.dataset.status = status;
  let text = status;
  if (status === 'open') text = 'live';
  else if (status === 'connecting') text = 'connecting…';
  else if (status === 'reconnecting') text = `reconnecting${info.attempt > 1 ? ` (try ${info.attempt})` : '…'}`;
  else if (status === 'closed') text = info.code ? `closed (${info.code})` : 'closed';
  ui.statusText.textContent = text;
  ui.status.title = info.reason ? `${status}: ${info.reason}` : status;
}

function send(data, paths) {
  if (!client || anonymous) return Promise.resolve(null);
  return client.emit(scope, { data, paths }).catch((err) => {
    if (err.code === 'forbidden') {
      notice('You may not edit in this room (' + err.message + ').', { kind: 'error' });
      return false;
    }
    return null; // offline too long (timeout): an edit goes out again once back
  });
}

// Edits whose emit failed (offline longer than the request timeout): sent
// again once subscribed again.
const unsent = new Set();
function sendItem(item) {
  unsent.delete(item.id);
  send({ t: 'item', item }, ['items/' + item.id]).then((r) => {
    if (r === null && !anonymous) unsent.add(item.id);
  });
}
function resendUnsent() {
  for (const id of [...unsent]) {
    const it = items.get(id);
    if (it) sendItem(it);
    else unsent.delete(id);
  }
}

function requestSync() {
  pendingSync = uid();
  send({ t: 'sync', req: pendingSync, items: snapshot() });
}

const MAX_ACTIVITY = 6;
function showActivity(ev) {
  const li = document.createElement('li');
  const meta = document.createElement('span');
  meta.className = 'meta';
  const from = ev.origin == null ? 'HTTP' : `session ${ev.origin}`;
  meta.textContent = `#${ev.seq} from ${from}` + (ev.paths?.length ? ` · ${ev.paths.join(', ')}` : '');
  const body = document.createElement('code');
  let text = 'data' in ev ? JSON.stringify(ev.data) : '(no data)';
  if (text.length > 160) text = text.slice(0, 157) + '…';
  body.textContent = text;
  li.append(meta, body);
  ui.activity.prepend(li);
  while (ui.activity.children.length > MAX_ACTIVITY) ui.activity.lastChild.remove();
  ui.activityCard.hidden = false;
}

function onEvent(ev) {
  const data = ev.data;
  if (!data || typeof data !== 'object' || !['item', 'sync', 'state'].includes(data.t)) {
    showActivity(ev); // not one of ours: e.g. the README's curl /api/emit
    return;
  }
  switch (data.t) {
    case 'item':
      merge([data.item]);
      break;
    case 'sync': {
      merge(data.items);
      // A request from the history is old: it was answered back then.
      if (ev.seq <= replayedUpTo) break;
      if (items.size === 0 || typeof data.req !== 'string') break;
      // Answer after a random moment unless another tab answers first.
      const req = data.req;
      setTimeout(() => {
        if (answered.has(req)) return;
        answered.add(req);
        send({ t: 'state', req, items: snapshot() });
      }, 40 + Math.random() * 260);
      break;
    }
    case 'state':
      if (typeof data.req === 'string') answered.add(data.req);
      merge(data.items);
      if (data.req === pendingSync) {
        pendingSync = null;
        if (ui.notice.dataset.kind === 'sync') clearNotice();
      }
      break;
  }
}

function start(name) {
  myName = name;
  try { localStorage.setItem(NAME_KEY, name); } catch { /* ignore */ }
  ui.join.hidden = true;
  ui.board.hidden = false;
  ui.peopleCard.hidden = false;
  loadCache();
  render();

  client = connect('/ws', {
    token: getToken,
    reconnect: { initialDelay: 300, maxDelay: 5000, factor: 2 },
    pingInterval: 10000,
    requestTimeout: 5000,
  });
  setStatus(client.status);
  client.on('status', (status, info) => {
    setStatus(status, info);
    if (status === 'open' && ui.notice.dataset.kind === 'link') clearNotice();
    if (status === 'reconnecting' && info.attempt >= 2) {
      notice('Connection lost — reconnecting…', { kind: 'link' });
    }
    if (status === 'closed' && info.code === 4401) {
      notice(fixedToken
        ? 'The server rejected the token given in the address (4401): not reconnecting.'
        : 'The server rejected the token (4401): not reconnecting. Reload the page to sign in again.',
      { kind: 'error' });
    }
    const usable = status !== 'closed';
    ui.newItem.disabled = !usable;
    ui.addForm.querySelector('button').disabled = !usable;
    renderPeople();
  });
  client.on('welcome', (w) => {
    ui.me.textContent = w.user ? `You are ${w.user} · session ${w.session}` : `Anonymous · session ${w.session}`;
  });

  // since {seq: 0}: the room's whole kept history first (a late joiner
  // rebuilds the list from it); later resubscribes recover by themselves.
  sub = client.subscribe(scope, { meta: { name }, since: { seq: 0 } });
  sub.on('event', onEvent);
  sub.on('presence', renderPeople);
  sub.on('subscribed', resendUnsent);
  sub.on('recovered', (info) => {
    replayedUpTo = info.seq;
  });
  sub.on('refetch', (info) => {
    // The history cannot fill the gap: ask the open tabs for the list.
    replayedUpTo = 0;
    const why = info.reason === 'epoch' ? 'the server restarted'
      : info.trigger === 'since' ? 'the room\'s history is incomplete'
        : 'some updates could not be recovered';
    notice(`Reloading the list: ${why}.`, { kind: 'sync' });
    requestSync();
    setTimeout(() => { if (ui.notice.dataset.kind === 'sync') clearNotice(); }, 4000);
  });
  sub.on('closed', (m) => {
    if (m.reason !== 'shutdown') notice(`The server closed this room (${m.reason}).`, { kind: 'error' });
  });
  window.scopecastDemo = { client, sub, scope, items };
}

// ---- edits ----------------------------------------------------------------------

function change(id, patch) {
  const cur = items.get(id);
  if (!cur) return;
  const next = { ...cur, ...patch, v: cur.v + 1, w: client?.welcome?.session ?? '' };
  merge([next]);
  sendItem(next);
}

ui.addForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.newItem.value.trim().slice(0, 140);
  if (!text || !client) return;
  const item = { id: uid(), text, done: false, deleted: false, v: 1, w: client.welcome?.session ?? '', by: myName, at: Date.now() };
  merge([item]);
  sendItem(item);
  ui.newItem.value = '';
  ui.newItem.focus();
});

ui.items.addEventListener('change', (e) => {
  const li = e.target.closest('.item');
  if (li && e.target.matches('input[type="checkbox"]')) change(li.dataset.id, { done: e.target.checked });
});
ui.items.addEventListener('click', (e) => {
  const li = e.target.closest('.item');
  if (li && e.target.closest('.remove')) change(li.dataset.id, { deleted: true });
});

// ---- rendering ------------------------------------------------------------------

function render() {
  const live = [...items.values()].filter((i) => !i.deleted)
    .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  const existing = new Map([...ui.items.children].map((li) => [li.dataset.id, li]));
  const order = [];
  for (const it of live) {
    let li = existing.get(it.id);
    if (!li) {
      li = document.createElement('li');
      li.className = 'item';
      li.dataset.id = it.id;
      const cb = document.createElement('input');
      cb.type = 'checkbox';
      cb.setAttribute('aria-label', 'done');
      const text = document.createElement('span');
      text.className = 'text';
      const by = document.createElement('span');
      by.className = 'by';
      const rm = document.createElement('button');
      rm.type = 'button';
      rm.className = 'remove';
      rm.title = 'Remove';
      rm.setAttribute('aria-label', 'Remove');
      rm.textContent = '×';
      li.append(cb, text, by, rm);
    }
    li.classList.toggle('done', it.done);
    li.dataset.done = String(it.done);
    li.querySelector('input').checked = it.done;
    li.querySelector('.text').textContent = it.text;
    const by = li.querySelector('.by');
    if (by.dataset.name !== String(it.by)) {
      by.dataset.name = String(it.by);
      by.replaceChildren(avatar(it.by, 1, it.by ? `added by ${it.by}` : 'added anonymously'));
    }
    order.push(li);
  }
  // Move only what is out of place (re-inserting restarts animations).
  const keep = new Set(order);
  for (const li of existing.values()) if (!keep.has(li)) li.remove();
  order.forEach((li, i) => {
    if (ui.items.children[i] !== li) ui.items.insertBefore(li, ui.items.children[i] || null);
  });
  const done = live.filter((i) => i.done).length;
  ui.counts.textContent = live.length ? `${live.length - done} open · ${done} done` : '';
  ui.empty.hidden = live.length > 0;
}

function renderPeople() {
  const live = sub && client && client.status === 'open' && sub.state === 'subscribed';
  const groups = live ? sub.presence : [];
  const els = [];
  const stack = [];
  for (const g of groups) {
    const c0 = g.connections[0];
    const name = g.user ?? c0?.meta?.name ?? null;
    const tabs = g.connections.length;
    const li = document.createElement('li');
    li.className = 'person';
    li.dataset.user = g.user ?? 'anon:' + c0.session;
    li.dataset.tabs = String(tabs);
    const who = document.createElement('div');
    who.className = 'who';
    const n = document.createElement('span');
    n.className = 'name';
    n.textContent = name ?? 'anonymous';
    if (g.self) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = 'you';
      n.append(you);
    }
    const t = document.createElement('span');
    t.className = 'tabs';
    t.textContent = tabs === 1 ? '1 tab' : `${tabs} tabs`;
    who.append(n, t);
    li.append(avatar(name, tabs, `${name ?? 'anonymous'} · ${t.textContent}`), who);
    els.push(li);
    if (stack.length < 6) stack.push(avatar(name, 1));
  }
  ui.people.replaceChildren(...els);
  ui.offline.hidden = live;
  ui.offline.textContent = client?.status === 'closed' ? 'Not connected.'
    : 'Offline — people show up again once reconnected.';
  ui.stack.replaceChildren(...stack);
  ui.online.textContent = String(groups.length);
}

// ---- boot -----------------------------------------------------------------------

ui.random.addEventListener('click', () => {
  ui.name.value = randomName();
  ui.name.focus();
});
ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = ui.name.value.trim().replace(/[\x00-\x1f\x7f]/g, '').slice(0, 40);
  if (name) start(name);
});

const initial = (params.get('name') || '').trim().slice(0, 40) ||
  (fixedToken ? 'guest' : '') ||
  (() => { try { return localStorage.getItem(NAME_KEY) || ''; } catch { return ''; } })();
if (initial) {
  start(initial);
} else {
  ui.join.hidden = false;
  ui.name.value = randomName();
  ui.name.select();
}
