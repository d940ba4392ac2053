/**
 * A small benchmark harness: medians of repeated runs, the machine's memory bandwidth measured
 * in the same run (the floor for memory-bound work), and one table that prints each figure
 * beside its baseline as a ratio. Timings live here, never in pass/fail tests.
 */
export interface Row {
  name: string;
  /** Our figure. */
  value: number;
  unit: string;
  /** The comparison figure and where it comes from. */
  baseline?: { value: number; label: string };
  /** The physical floor (bytes moved / bandwidth measured now), same unit. */
  floor?: number;
  note?: string;
}

export interface Suite {
  title: string;
  run(ctx: BenchContext): Promise<Row[]> | Row[];
}

export interface BenchContext {
  /** Measured copy bandwidth in GB/s (read + write counted). */
  bandwidthGBs: number;
  /** Seconds to move `bytes` at the measured bandwidth, in ms. */
  floorMs(bytes: number): number;
  quick: boolean;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Median wall time in ms of `repeat` runs after `warmup` runs. */
export async function timeMs(fn: () => unknown, opts: { repeat?: number; warmup?: number } = {}): Promise<number> {
  const { repeat = 5, warmup = 1 } = opts;
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** Copy bandwidth of this machine now: 256 MB copied with TypedArray.set (memcpy), read + write bytes. */
export async function measureBandwidthGBs(): Promise<number> {
  const n = 64 * 1024 * 1024;
  const a = new Float32Array(n).fill(1);
  const b = new Float32Array(n);
  const ms = await timeMs(() => b.set(a), { repeat: 5, warmup: 2 });
  return (2 * n * 4) / (ms / 1000) / 1e9;
}

function fmt(x: number): string {
  if (x === 0) return '0';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  if (Math.abs(x) >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

export function printTable(title: string, rows: Row[]): void {
  console.log(`\n## ${title}\n`);
  console.log('| benchmark | ours | baseline | ours/baseline | floor | ours/floor | note |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    const base = r.baseline ? `${fmt(r.baseline.value)} ${r.unit} (${r.baseline.label})` : '';
    const ratio = r.baseline ? `${fmt(r.value / r.baseline.value)}×` : '';
    const floor = r.floor !== undefined ? `${fmt(r.floor)} ${r.unit}` : '';
    const fratio = r.floor !== undefined ? `${fmt(r.value / r.floor)}×` : '';
    console.log(`| ${r.name} | ${fmt(r.value)} ${r.unit} | ${base} | ${ratio} | ${floor} | ${fratio} | ${r.note ?? ''} |`);
  }
}
