/** Random sources for DARE's keep-masks: a seeded default and a replay of recorded masks. */
import { LoraEdgeError } from '../errors.ts';
import { SeededRng } from '../linalg/rng.ts';
import type { RandomSource } from './types.ts';

/** Masks from a seeded xoshiro128** stream: the same seed gives the same merge everywhere. */
export function seededRandomSource(seed = 0): RandomSource {
  const rng = new SeededRng(seed);
  return {
    bernoulliMask(n, p) {
      const m = new Uint8Array(n);
      // u < p·2³² on raw 32-bit draws: the same test as uniform() < p, without the division.
      const threshold = p * 4294967296;
      for (let i = 0; i < n; i++) m[i] = +(rng.nextUint32() < threshold);
      return m;
    },
  };
}

/**
 * Hands out recorded masks in order (e.g. the ones PEFT drew with torch.bernoulli), refusing a
 * draw whose size does not match the next recorded mask.
 */
export function replayRandomSource(masks: readonly Uint8Array[]): RandomSource & { remaining(): number } {
  let next = 0;
  return {
    bernoulliMask(n) {
      const m = masks[next];
      if (!m) throw new LoraEdgeError('merge_invalid', `mask replay: draw ${next + 1} requested, only ${masks.length} recorded`);
      if (m.length !== n)
        throw new LoraEdgeError('merge_invalid', `mask replay: draw ${next + 1} needs ${n} values, the recorded mask has ${m.length}`);
      next++;
      return m;
    },
    remaining: () => masks.length - next,
  };
}
