// Launching Debian's Chromium through playwright-core (no browser download).
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** chromium.launch gives every browser a fresh temporary --user-data-dir. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, timeout: 30000 });
}

/** Opens the demo page as `name` in room `room` and waits until it is live. */
export async function openDemo(browser, server, { name, room, context, query = '', viewport, waitOpen = true }) {
  const ctx = context ?? await browser.newContext({ viewport: viewport ?? { width: 1180, height: 760 } });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(err));
  const q = new URLSearchParams(query);
  if (name) q.set('name', name);
  await page.goto(`${server.http}/?${q}#${encodeURIComponent(room)}`);
  if (waitOpen) await page.waitForSelector('#status[data-status="open"]', { timeout: 10000 });
  return page;
}

/** [[user, tabs], ...] as the page shows them. */
export function people(page) {
  return page.$$eval('#people .person', (els) => els.map((e) => [e.dataset.user, Number(e.dataset.tabs)]));
}

/** Waits until the page shows exactly these users (order ignored). */
export function waitPeople(page, expected, timeout = 5000) {
  const want = [...expected].sort();
  return page.waitForFunction(
    (w) => {
      const got = [...document.querySelectorAll('#people .person')].map((e) => e.dataset.user).sort();
      return got.length === w.length && got.every((u, i) => u === w[i]);
    },
    want,
    { timeout, polling: 25 },
  );
}

/** [{text, done}] of the list as shown. */
export function items(page) {
  return page.$$eval('#items .item', (els) => els.map((e) => ({
    id: e.dataset.id, text: e.querySelector('.text').textContent, done: e.dataset.done === 'true',
  })));
}

export function waitItems(page, predicate, arg, timeout = 5000) {
  return page.waitForFunction(
    ({ src, arg: a }) => {
      const list = [...document.querySelectorAll('#items .item')].map((e) => ({
        text: e.querySelector('.text').textContent, done: e.dataset.done === 'true',
      }));
      // eslint-disable-next-line no-new-func
      return new Function('list', 'arg', `return (${src})(list, arg)`)(list, a);
    },
    { src: predicate.toString(), arg },
    { timeout, polling: 25 },
  );
}

export async function addItem(page, text) {
  await page.fill('#new-item', text);
  await page.press('#new-item', 'Enter');
}
