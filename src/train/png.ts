// A minimal PNG writer and line-chart renderer for the quality report's cost/quality curve.
//
// WHY our own: the report must carry an image and the project takes no plotting dependency. PNG
// is small to write correctly: 8-byte signature, then chunks (length, type, data, CRC-32 of type
// and data): IHDR (size, 8-bit RGB), IDAT (zlib stream of scanlines, each prefixed by filter
// byte 0 = None — node:zlib's deflate produces the zlib framing PNG requires), IEND. Text uses a
// built-in 5×7 bitmap font (upper case, digits, common punctuation).
import { deflateSync } from 'node:zlib';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, the one PNG and zlib's crc32 use). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encodes width×height RGB pixels (row-major, 3 bytes each) as a PNG file. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Uint8Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) throw new RangeError('PNG size must be positive integers');
  if (rgb.length !== width * height * 3) throw new RangeError(`PNG needs ${width * height * 3} bytes of RGB, got ${rgb.length}`);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour RGB
  ihdr[10] = 0; // deflate
  ihdr[11] = 0; // adaptive filtering (each row says which filter; we use 0)
  ihdr[12] = 0; // no interlace
  const stride = width * 3;
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 0;
    raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  }
  const idat = deflateSync(raw, { level: 9 });
  const sig = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
  const parts = [sig, chunk('IHDR', ihdr), chunk('IDAT', new Uint8Array(idat.buffer, idat.byteOffset, idat.byteLength)), chunk('IEND', new Uint8Array(0))];
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// 5×7 glyphs, one number per row, bit 4 = leftmost column.
const GLYPHS: Record<string, number[]> = {
  A: [0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11], B: [0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e],
  C: [0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e], D: [0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c],
  E: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f], F: [0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10],
  G: [0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f], H: [0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11],
  I: [0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e], J: [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c],
  K: [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], L: [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f],
  M: [0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11], N: [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
  O: [0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], P: [0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10],
  Q: [0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d], R: [0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11],
  S: [0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e], T: [0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
  U: [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e], V: [0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04],
  W: [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a], X: [0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11],
  Y: [0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04], Z: [0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f],
  '0': [0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e], '1': [0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e],
  '2': [0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f], '3': [0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e],
  '4': [0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02], '5': [0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e],
  '6': [0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e], '7': [0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
  '8': [0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e], '9': [0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c],
  ' ': [0, 0, 0, 0, 0, 0, 0], '.': [0, 0, 0, 0, 0, 0x0c, 0x0c], ',': [0, 0, 0, 0, 0x0c, 0x04, 0x08],
  '%': [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], '-': [0, 0, 0, 0x1f, 0, 0, 0],
  '+': [0, 0x04, 0x04, 0x1f, 0x04, 0x04, 0], '/': [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
  '(': [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], ')': [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
  ':': [0, 0x0c, 0x0c, 0, 0x0c, 0x0c, 0], '=': [0, 0, 0x1f, 0, 0x1f, 0, 0], '_': [0, 0, 0, 0, 0, 0, 0x1f],
  '<': [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02], '>': [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
  '?': [0x0e, 0x11, 0x01, 0x02, 0x04, 0, 0x04], '@': [0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e],
};

export type Rgb = readonly [number, number, number];

/** An RGB raster with the few drawing operations the chart needs. */
export class Canvas {
  readonly rgb: Uint8Array;

  constructor(readonly width: number, readonly height: number, background: Rgb = [255, 255, 255]) {
    this.rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.rgb.set(background, i * 3);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.rgb.set(c, (y * this.width + x) * 3);
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.set(x + i, y + j, c);
  }

  /** A line `thickness` pixels wide; with `dash` > 0, dashes and gaps of that many pixels. */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thickness = 1, dash = 0): void {
    const len = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
    const r = (thickness - 1) / 2;
    for (let s = 0; s <= len; s++) {
      if (dash > 0 && Math.floor(s / dash) % 2 === 1) continue;
      const x = x0 + ((x1 - x0) * s) / len;
      const y = y0 + ((y1 - y0) * s) / len;
      for (let dy = -Math.floor(r); dy <= Math.ceil(r); dy++) for (let dx = -Math.floor(r); dx <= Math.ceil(r); dx++) this.set(x + dx, y + dy, c);
    }
  }

  /** Text in the 5×7 font, `scale` pixels per font pixel; returns the width drawn. */
  text(x: number, y: number, s: string, c: Rgb, scale = 2): number {
    let cx = x;
    for (const ch of s.toUpperCase()) {
      const g = GLYPHS[ch] ?? GLYPHS['?']!;
      for (let row = 0; row < 7; row++) {
        for (let col = 0; col < 5; col++) if ((g[row]! >> (4 - col)) & 1) this.fillRect(cx + col * scale, y + row * scale, scale, scale, c);
      }
      cx += 6 * scale;
    }
    return cx - x;
  }

  textWidth(s: string, scale = 2): number {
    return s.length * 6 * scale;
  }

  png(): Uint8Array {
    return encodePng(this.width, this.height, this.rgb);
  }
}

export interface ChartSeries {
  name: string;
  /** Points in data coordinates, drawn as a polyline in order. */
  points: readonly { x: number; y: number }[];
  color: Rgb;
  dashed?: boolean;
  /** A marker (filled square) at one point, e.g. the calibrated operating point. */
  marker?: { x: number; y: number };
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  xMax: number;
  yMax: number;
  /** Tick spacing in data units and how to print a tick. */
  xTick: number;
  yTick: number;
  xFormat: (v: number) => string;
  yFormat: (v: number) => string;
  /** Vertical reference lines (e.g. the quality-loss budgets). */
  xRefs?: readonly number[];
  /** Legend text for the series markers (drawn only when some series has one). */
  markerLabel?: string;
  width?: number;
  height?: number;
}

export const PALETTE: readonly Rgb[] = [
  [214, 39, 40], [31, 119, 180], [44, 160, 44], [255, 127, 14], [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127], [23, 190, 207], [188, 189, 34],
];

/** Renders a line chart with axes, grid, reference lines and a legend; returns PNG bytes. */
export function lineChart(series: readonly ChartSeries[], o: ChartOptions): Uint8Array {
  const W = o.width ?? 960, H = o.height ?? 600;
  const c = new Canvas(W, H);
  const left = 80, right = 290, top = 50, bottom = 70;
  const pw = W - left - right, ph = H - top - bottom;
  const px = (x: number) => left + (Math.min(Math.max(x, 0), o.xMax) / o.xMax) * pw;
  const py = (y: number) => top + ph - (Math.min(Math.max(y, 0), o.yMax) / o.yMax) * ph;
  const grid: Rgb = [228, 228, 228], axis: Rgb = [40, 40, 40], ink: Rgb = [20, 20, 20];

  c.text(left, 16, o.title, ink, 2);
  for (let v = 0; v <= o.yMax + 1e-9; v += o.yTick) {
    c.line(left, py(v), left + pw, py(v), grid);
    const label = o.yFormat(v);
    c.text(left - 8 - c.textWidth(label, 2), py(v) - 5, label, ink, 2);
  }
  for (let v = 0; v <= o.xMax + 1e-9; v += o.xTick) {
    c.line(px(v), top, px(v), top + ph, grid);
    const label = o.xFormat(v);
    c.text(px(v) - c.textWidth(label, 2) / 2, top + ph + 8, label, ink, 2);
  }
  for (const r of o.xRefs ?? []) c.line(px(r), top, px(r), top + ph, [150, 150, 150], 1, 4);
  c.line(left, top + ph, left + pw, top + ph, axis, 2);
  c.line(left, top, left, top + ph, axis, 2);
  c.text(left + pw / 2 - c.textWidth(o.xLabel, 2) / 2, H - 30, o.xLabel, ink, 2);
  // Vertical y label: letters stacked.
  const yl = o.yLabel.toUpperCase();
  for (let i = 0; i < yl.length; i++) c.text(12, top + ph / 2 - (yl.length * 16) / 2 + i * 16, yl[i]!, ink, 2);

  for (const s of series) {
    for (let i = 1; i < s.points.length; i++) {
      const a = s.points[i - 1]!, b = s.points[i]!;
      c.line(px(a.x), py(a.y), px(b.x), py(b.y), s.color, 2, s.dashed ? 6 : 0);
    }
    if (s.marker) c.fillRect(px(s.marker.x) - 5, py(s.marker.y) - 5, 11, 11, s.color);
  }
  // Legend.
  let ly = top + 4;
  for (const s of series) {
    c.line(left + pw + 16, ly + 6, left + pw + 44, ly + 6, s.color, 3, s.dashed ? 6 : 0);
    c.text(left + pw + 52, ly, s.name.slice(0, 19), ink, 2);
    ly += 22;
  }
  const marked = series.find((s) => s.marker);
  if (marked && o.markerLabel) {
    c.fillRect(left + pw + 25, ly + 1, 11, 11, marked.color);
    c.text(left + pw + 52, ly, o.markerLabel.slice(0, 19), ink, 2);
  }
  return c.png();
}
