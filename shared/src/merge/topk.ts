/**
 * Magnitude pruning as PEFT does it: keep the k = int(density·numel) entries of largest |x|
 * (torch.topk), zero the rest. The threshold is found by a two-pass radix select on the float
 * bits (|x| orders like its bit pattern with the sign cleared): O(n) with two 64K-bucket
 * histograms, no sort, no copy of the data. Equal magnitudes at the threshold are kept
 * lowest index first (torch.topk leaves that order unspecified).
 */

/** The k-th largest |x| as a bit pattern, and how many entries equal to it make up k. */
interface Threshold {
  bits: number;
  takeEqual: number;
}

function threshold(bits: Uint32Array, k: number): Threshold {
  const hi = new Uint32Array(1 << 15); // |x| bits >>> 16 fit 15 bits (sign cleared)
  for (let i = 0; i < bits.length; i++) {
    const b = ((bits[i] as number) & 0x7fffffff) >>> 16;
    hi[b] = (hi[b] as number) + 1;
  }
  let above = 0;
  let bucket = hi.length - 1;
  for (; bucket > 0; bucket--) {
    const c = hi[bucket] as number;
    if (above + c >= k) break;
    above += c;
  }
  const lo = new Uint32Array(1 << 16);
  for (let i = 0; i < bits.length; i++) {
    const a = (bits[i] as number) & 0x7fffffff;
    if (a >>> 16 === bucket) {
      const b = a & 0xffff;
      lo[b] = (lo[b] as number) + 1;
    }
  }
  let low = lo.length - 1;
  for (; low > 0; low--) {
    const c = lo[low] as number;
    if (above + c >= k) break;
    above += c;
  }
  return { bits: ((bucket << 16) | low) >>> 0, takeEqual: k - above };
}

/**
 * x with all but its k largest-magnitude entries zeroed, into `out` (a new array by default;
 * `out = x` prunes in place).
 */
export function keepTopKMagnitude(x: Float32Array, k: number, out: Float32Array = new Float32Array(x.length)): Float32Array {
  const n = x.length;
  if (k >= n) {
    if (out !== x) out.set(x);
    return out;
  }
  if (k <= 0) return out.fill(0);
  const bits = new Uint32Array(x.buffer, x.byteOffset, n);
  const t = threshold(bits, k);
  // Keep |x| ≥ threshold by masking the bits with all-ones or all-zeros (branch-free: the
  // keep/drop pattern is random)...
  const outBits = new Uint32Array(out.buffer, out.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const b = bits[i] as number;
    outBits[i] = b & -+((b & 0x7fffffff) >= t.bits);
  }
  // ...then drop the entries equal to the threshold beyond the first takeEqual (lowest index wins).
  let equal = t.takeEqual;
  for (let i = 0; i < n; i++) {
    if (((outBits[i] as number) & 0x7fffffff) === t.bits) {
      if (equal > 0) equal--;
      else outBits[i] = 0;
    }
  }
  return out;
}

/**
 * PEFT's `magnitude_based_pruning`: k = int(density·numel); density ≥ 1 keeps everything.
 * `inPlace` overwrites x (for tensors the caller owns, e.g. freshly formed deltas).
 */
export function magnitudePrune(x: Float32Array, density: number, inPlace = false): Float32Array {
  const out = inPlace ? x : new Float32Array(x.length);
  if (density >= 1) {
    if (!inPlace) out.set(x);
    return out;
  }
  return keepTopKMagnitude(x, Math.trunc(density * x.length), out);
}
