/**
 * `tensor.mean()` of a float32 vector in PyTorch's CPU summation order (1.13, AVX2, one thread),
 * so the double-quant offset matches bitsandbytes' to the bit where that order applies. Other
 * machines (more threads, other vector widths) differ in the last bits; so does this, then.
 *
 * The order: 8-lane float32 vector accumulators, 4 of them interleaved (vector k goes to
 * accumulator k mod 4), cascaded over 4 levels every 2^p vectors, p = max(4, ceil(log2 m) / 4)
 * for m = vectors / 4; leftover vectors join accumulator 0; the 4 accumulators fold into the first;
 * the scalar tail is summed on its own and then the 8 lanes are added to it in order.
 */
const LANES = 8;
const ROWS = 4;
const LEVELS = 4;

export function torchMeanF32(x: Float32Array): number {
  return Math.fround(torchSumF32(x) / x.length);
}

export function torchSumF32(x: Float32Array): number {
  const n = x.length;
  const vectors = Math.floor(n / LANES);
  const size = Math.floor(vectors / ROWS);
  // acc[(level * ROWS + row) * LANES + lane]; a Float32Array store rounds every add to float32.
  const acc = new Float32Array(LEVELS * ROWS * LANES);
  const addVector = (dst: number, vector: number): void => {
    for (let l = 0; l < LANES; l++) acc[dst + l] = (acc[dst + l] as number) + (x[vector * LANES + l] as number);
  };
  const addAcc = (dst: number, src: number): void => {
    for (let l = 0; l < LANES; l++) acc[dst + l] = (acc[dst + l] as number) + (acc[src + l] as number);
  };
  const slot = (level: number, row: number): number => (level * ROWS + row) * LANES;

  const power = Math.max(4, Math.floor(ceilLog2(size) / LEVELS));
  const step = 1 << power;
  const mask = step - 1;
  let i = 0;
  while (i + step <= size) {
    for (let j = 0; j < step; j++, i++) {
      for (let r = 0; r < ROWS; r++) addVector(slot(0, r), i * ROWS + r);
    }
    for (let level = 1; level < LEVELS; level++) {
      for (let r = 0; r < ROWS; r++) {
        addAcc(slot(level, r), slot(level - 1, r));
        acc.fill(0, slot(level - 1, r), slot(level - 1, r) + LANES);
      }
      if ((i & (mask * 2 ** (level * power))) !== 0) break;
    }
  }
  for (; i < size; i++) {
    for (let r = 0; r < ROWS; r++) addVector(slot(0, r), i * ROWS + r);
  }
  for (let level = 1; level < LEVELS; level++) {
    for (let r = 0; r < ROWS; r++) addAcc(slot(0, r), slot(level, r));
  }
  for (let v = size * ROWS; v < vectors; v++) addVector(slot(0, 0), v);
  for (let r = 1; r < ROWS; r++) addAcc(slot(0, 0), slot(0, r));

  let total = 0;
  for (let k = vectors * LANES; k < n; k++) total = Math.fround(total + (x[k] as number));
  for (let l = 0; l < LANES; l++) total = Math.fround(total + (acc[l] as number));
  return total;
}

function ceilLog2(m: number): number {
  let p = 0;
  while (2 ** p < m) p++;
  return p;
}
