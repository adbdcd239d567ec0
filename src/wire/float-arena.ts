// The float arena a protobuf request's packed floats are copied into.
import { endianness } from 'node:os';

const LITTLE_ENDIAN = endianness() === 'LE';

/**
 * All packed floats of one message are copied into ONE aligned buffer (sized by the message,
 * so it always fits): a Float32Array cannot view bytes at an odd offset, and Kafka hands out
 * slices of a fetch buffer at any offset, so copying per field would mean an ArrayBuffer
 * allocation per candidate — measurably slower than one allocation and a few memcpy.
 */
export class FloatArena {
  private f32: Float32Array | undefined;
  private u8: Uint8Array | undefined;
  private used = 0;
  constructor(private readonly capacity: number) {}

  take(src: Uint8Array, start: number, count: number): Float32Array {
    if (!this.f32) {
      this.f32 = new Float32Array(this.capacity);
      this.u8 = new Uint8Array(this.f32.buffer);
    }
    const at = this.used;
    this.used += count;
    const out = this.f32.subarray(at, at + count);
    if (LITTLE_ENDIAN && Buffer.isBuffer(src)) {
      src.copy(this.u8!, at * 4, start, start + count * 4);
    } else if (LITTLE_ENDIAN) {
      this.u8!.set(src.subarray(start, start + count * 4), at * 4);
    } else {
      const view = new DataView(src.buffer, src.byteOffset + start, count * 4);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
    }
    return out;
  }
}
