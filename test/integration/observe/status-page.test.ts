// The status page in a real browser (headless Chromium driven by playwright-core) against an
// in-process serve with synthetic traffic (valid requests plus broken records for the DLQ):
// it loads with no console errors and no request leaving the origin, its numbers move between
// two reads, the breaker state it shows changes when injected engine failures open the breaker,
// and at phone width nothing overflows horizontally. Screenshots go to test-results/ (ignored by git).
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { makeRequest, record, serveFixture, testConfig, withProducer } from '../stream/helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const ARTIFACTS = join(ROOT, 'test-results');

let failing = false;
const serve = serveFixture('page', (n) => {
  const base = testConfig(n);
  return {
    config: testConfig(n, {
      cost: { lightweight: 0.002, heavyweight: 0.02 },
      // Opens after a handful of failures and stays open for the rest of the test.
      breaker: { ...base.breaker, volumeThreshold: 5, errorThresholdPercentage: 50, resetTimeoutMs: 120_000, rollingCountTimeoutMs: 10_000 },
    }),
    options: {
      wrapScorer: (score) => async (task) => {
        if (failing) throw new Error('injected engine failure');
        return score(task);
      },
    },
  };
});

let browser: Browser;
let running = true;
let traffic: Promise<void>;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  traffic = withProducer(async (p) => {
    let i = 0;
    while (running) {
      const reqs = Array.from({ length: 4 }, () => makeRequest(`page-${i++}`, 3, 8));
      await p.send({
        topic: serve.n.requests,
        messages: [...reqs.map((r) => record(r, 'json')), { key: `broken-${i}`, value: Buffer.from('{not json'), headers: { 'content-type': 'application/json' } }],
      });
      await new Promise((r) => setTimeout(r, 250));
    }
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-background-networking'] });
}, 60_000);

afterAll(async () => {
  running = false;
  await traffic?.catch(() => {});
  await browser?.close();
});

async function open(width: number, height: number): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width, height } });
  const problems: string[] = [];
  const origin = new URL(serve.app.httpUrl!).origin;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    if (!r.url().startsWith(origin)) problems.push(`request left the origin: ${r.url()}`);
  });
  const res = await page.goto(`${serve.app.httpUrl}/`);
  expect(res?.status()).toBe(200);
  expect(res?.headers()['content-security-policy']).toContain("default-src 'none'");
  return { page, problems };
}

// Evaluated in the page (as strings: the test's TypeScript has no DOM types).
const OVERFLOW = 'document.documentElement.scrollWidth - document.documentElement.clientWidth';
const WIDE_ELEMENTS = `[...document.querySelectorAll('body *')]
  .filter((el) => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .map((el) => el.id || el.tagName)`;

const text = (page: Page, sel: string) => page.locator(sel).innerText();

describe('the status page', () => {
  it('shows live numbers, the breaker opening, and fits 1280x800', async () => {
    const { page, problems } = await open(1280, 800);
    // Two samples are needed before rates exist.
    await expect.poll(() => text(page, '#rate'), { timeout: 30_000, interval: 500 }).not.toBe('–');
    await expect.poll(() => page.locator('#chart polyline').count(), { timeout: 30_000 }).toBeGreaterThan(0);
    const first = { decisions: await text(page, '#decisions'), dlq: await text(page, '#dlq') };
    expect(Number(first.decisions.replace(/,/g, ''))).toBeGreaterThan(0);
    await expect.poll(() => text(page, '#decisions'), { timeout: 20_000, interval: 500 }).not.toBe(first.decisions);
    await expect.poll(() => text(page, '#dlq'), { timeout: 20_000, interval: 500 }).not.toBe(first.dlq);
    expect(await text(page, '#dlq-rate')).toMatch(/\/s$/);
    expect(await text(page, '#p50')).toMatch(/s$/);
    expect(await text(page, '#model')).toContain(serve.app.modelVersion!);
    expect(await page.locator('#cost-card').isVisible()).toBe(true);
    expect(await text(page, '#savings')).toMatch(/%\)$/);
    expect(await text(page, '#breaker')).toBe('closed');

    failing = true;
    await expect.poll(() => text(page, '#breaker'), { timeout: 30_000, interval: 500 }).toBe('open');
    expect(serve.app.control.breaker().state).toBe('open');
    expect(await text(page, '#trips')).toBe('1');

    await page.screenshot({ path: join(ARTIFACTS, 'status-page-1280x800.png'), fullPage: false });
    expect(await page.evaluate<number>(OVERFLOW)).toBeLessThanOrEqual(0);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('fits a phone-width window with nothing overflowing horizontally', async () => {
    const { page, problems } = await open(375, 740);
    await expect.poll(() => text(page, '#rate'), { timeout: 30_000, interval: 500 }).not.toBe('–');
    expect(await page.evaluate<number>(OVERFLOW)).toBe(0);
    // Every element ends inside the viewport (an element may overflow a clipped parent unseen).
    expect(await page.evaluate<string[]>(WIDE_ELEMENTS)).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'status-page-phone.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });
});
