import { inflateSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { auc, brier, costQualityCurve, ece, shareAtBudget } from '../../../src/train/metrics.js';
import { fitLogistic, predictLogistic } from '../../../src/train/logistic.js';
import { Canvas, crc32, encodePng, lineChart } from '../../../src/train/png.js';
import { Rng } from '../../../src/train/rng.js';

describe('metrics', () => {
  it('AUC equals the pairwise definition, ties counting one half', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 6 }), fc.boolean()), { minLength: 2, maxLength: 60 }), (rows) => {
        const s = rows.map((r) => r[0]);
        const y = rows.map((r) => (r[1] ? 1 : 0));
        let num = 0, den = 0;
        for (let i = 0; i < s.length; i++) for (let j = 0; j < s.length; j++) {
          if (y[i] === 1 && y[j] === 0) {
            den++;
            num += s[i]! > s[j]! ? 1 : s[i] === s[j] ? 0.5 : 0;
          }
        }
        const a = auc(s, y);
        if (den === 0) expect(a).toBeNaN();
        else expect(a).toBeCloseTo(num / den, 12);
      }),
    );
  });

  it('Brier and ECE on a hand-checked case', () => {
    const p = [0.05, 0.15, 0.95, 0.85];
    const y = [0, 1, 1, 1];
    expect(brier(p, y)).toBeCloseTo((0.05 ** 2 + 0.85 ** 2 + 0.05 ** 2 + 0.15 ** 2) / 4, 12);
    // Bins: [0,0.1): p .05 y 0 → |.05−0|; [0.1,0.2): .15 vs 1; [0.8,0.9): .85 vs 1; [0.9,1]: .95 vs 1.
    expect(ece(p, y)).toBeCloseTo((0.05 + 0.85 + 0.15 + 0.05) / 4, 12);
  });

  it('the cost/quality curve counts quality loss over ALL candidates and finds the best share per budget', () => {
    // Scores high→low with labels 1,1,0,1,0: routing the top 4 loses 1 of 5 candidates.
    const s = [0.9, 0.8, 0.7, 0.6, 0.1];
    const y = [1, 1, 0, 1, 0];
    const c = costQualityCurve(s, y);
    expect(c.map((p) => [p.share, p.loss])).toEqual([[0, 0], [0.2, 0], [0.4, 0], [0.6, 0.2], [0.8, 0.2], [1, 0.4]]);
    expect(shareAtBudget(c, 0.1)).toMatchObject({ share: 0.4, loss: 0, threshold: 0.8 });
    expect(shareAtBudget(c, 0.2)).toMatchObject({ share: 0.8, loss: 0.2, threshold: 0.6 });
    expect(shareAtBudget(c, 0.5).share).toBe(1);
  });
});

describe('logistic regression', () => {
  it('recovers the generating weights on a large sample', () => {
    const rng = new Rng(3);
    const n = 20000, D = 3;
    const w = [1.5, -2, 0.5], b = 0.3;
    const x = new Float64Array(n * D);
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let z = b;
      for (let j = 0; j < D; j++) {
        x[i * D + j] = rng.normal();
        z += w[j]! * x[i * D + j]!;
      }
      y[i] = rng.next() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
    }
    const m = fitLogistic(x, y, n, D, 1e-6);
    for (let j = 0; j < D; j++) expect(m.w[j]).toBeCloseTo(w[j]!, 1);
    expect(m.w[D]).toBeCloseTo(b, 1);
    const p = new Float64Array(n);
    predictLogistic(m, x, n, D, p);
    expect(auc(p, y)).toBeGreaterThan(0.8);
  });
});

describe('PNG writer', () => {
  it('writes a valid PNG whose pixels decode back', () => {
    const c = new Canvas(7, 3, [10, 20, 30]);
    c.set(2, 1, [255, 0, 128]);
    const png = c.png();
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
    const chunks: { type: string; data: Uint8Array }[] = [];
    for (let o = 8; o < png.length;) {
      const len = dv.getUint32(o);
      const type = String.fromCharCode(...png.subarray(o + 4, o + 8));
      const data = png.subarray(o + 8, o + 8 + len);
      expect(dv.getUint32(o + 8 + len)).toBe(crc32(png.subarray(o + 4, o + 8 + len)));
      chunks.push({ type, data });
      o += 12 + len;
    }
    expect(chunks.map((k) => k.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const ih = new DataView(chunks[0]!.data.buffer, chunks[0]!.data.byteOffset, 13);
    expect([ih.getUint32(0), ih.getUint32(4), chunks[0]!.data[8], chunks[0]!.data[9]]).toEqual([7, 3, 8, 2]);
    const raw = inflateSync(chunks[1]!.data);
    expect(raw.length).toBe(3 * (1 + 7 * 3));
    const px = (x: number, y: number) => Array.from(raw.subarray(y * 22 + 1 + x * 3, y * 22 + 1 + x * 3 + 3));
    expect(raw[0]).toBe(0); // filter None
    expect(px(2, 1)).toEqual([255, 0, 128]);
    expect(px(0, 0)).toEqual([10, 20, 30]);
  });

  it('CRC-32 matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('draws a chart with the series colours in it', () => {
    const png = lineChart([{ name: 'a', points: [{ x: 0, y: 0 }, { x: 0.05, y: 0.5 }], color: [200, 10, 10] }], {
      title: 'T', xLabel: 'X', yLabel: 'Y', xMax: 0.1, yMax: 1, xTick: 0.02, yTick: 0.2, xFormat: String, yFormat: String, width: 300, height: 200,
    });
    const idat = (() => {
      const dv = new DataView(png.buffer, png.byteOffset);
      let o = 8;
      for (;;) {
        const len = dv.getUint32(o);
        if (String.fromCharCode(...png.subarray(o + 4, o + 8)) === 'IDAT') return png.subarray(o + 8, o + 8 + len);
        o += 12 + len;
      }
    })();
    const raw = inflateSync(idat);
    let red = 0;
    for (let i = 0; i + 2 < raw.length; i++) if (raw[i] === 200 && raw[i + 1] === 10 && raw[i + 2] === 10) red++;
    expect(red).toBeGreaterThan(50);
    expect(() => encodePng(2, 2, new Uint8Array(3))).toThrow(RangeError);
  });
});
