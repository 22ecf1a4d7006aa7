// Makes docs/demo.png: the demo page with three users online.
//   node tests/js/screenshot.mjs [--out=PATH] [--bin=PATH]
// (server binary: $SCOPECAST_BIN, --bin=PATH, or the newest build dir's)
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { startServer, REPO } from './helpers.mjs';
import { launchBrowser, openDemo, waitPeople, waitItems, addItem } from './browser.mjs';

const outArg = process.argv.find((a) => a.startsWith('--out='));
const out = path.resolve(outArg ? outArg.slice(6) : path.join(REPO, 'docs', 'demo.png'));
const ROOM = 'lobby';
const NAMES = ['Ana Souza', 'Bruno Silva', 'Chen Wei'];
const viewport = { width: 1120, height: 600 };

const server = await startServer({ demo: true });
const browser = await launchBrowser();
try {
  const pages = [];
  for (const name of NAMES) {
    const context = await browser.newContext({ viewport, deviceScaleFactor: 2, colorScheme: 'light' });
    pages.push(await openDemo(browser, server, { name, room: ROOM, context }));
  }
  // Ana also has a second tab open: she counts once, with 2 tabs.
  pages.push(await openDemo(browser, server, { name: NAMES[0], room: ROOM, context: pages[0].context() }));
  for (const p of pages) await waitPeople(p, NAMES, 5000);

  const [ana, bruno, chen] = pages;
  const edits = [
    [ana, 'Draft the launch post'],
    [bruno, 'Review the presence API'],
    [chen, 'Record a two-minute demo video'],
    [bruno, 'Order pizza for Friday'],
    [ana, 'Pick a name for the new room'],
  ];
  for (const [page, text] of edits) {
    await addItem(page, text);
    await waitItems(ana, (list, t) => list.some((i) => i.text === t), text, 3000);
  }
  await chen.click('#items .item:has(.text:text-is("Draft the launch post")) input[type="checkbox"]');
  await bruno.click('#items .item:has(.text:text-is("Order pizza for Friday")) input[type="checkbox"]');
  await waitItems(ana, (list) => list.filter((i) => i.done).length === 2, null, 3000);
  await bruno.fill('#new-item', 'Ship it');
  await bruno.bringToFront();
  await bruno.evaluate(() => document.activeElement?.blur());
  await bruno.mouse.move(0, 0);

  mkdirSync(path.dirname(out), { recursive: true });
  await bruno.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
