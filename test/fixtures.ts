/** Paths to the golden data copied from ../shared/fixtures (see fixtures/README.md). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const STORIES = join(FIXTURES, 'models', 'stories260k');
export const ADAPTERS = join(FIXTURES, 'adapters');
export const LORA_ADAPTERS = ['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8', 'tiny-dora-r4', 'tiny-lori-r8'] as const;
/** Every fixture adapter: LoRA-family first, then VeRA and AdaLoRA. */
export const ALL_ADAPTERS = [...LORA_ADAPTERS, 'tiny-vera-r16', 'tiny-adalora-r8'] as const;

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export function readBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function readJson<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** max |a-b| / max |b|: the norm-wise relative error the acceptance thresholds use. */
export function maxRelError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return scale === 0 ? diff : diff / scale;
}

export function flatten(rows: number[][]): Float32Array {
  return Float32Array.from(rows.flat());
}
