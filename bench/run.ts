/**
 * `npm run bench`: every suite in one run, each figure beside its baseline and floor.
 * `npm run bench -- --quick` runs smaller sizes; `-- name` runs only suites whose title matches.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BenchContext, measureBandwidthGBs, printTable, type Suite } from './lib.ts';

const suites: Suite[] = [];
const here = dirname(fileURLToPath(import.meta.url));
for (const f of readdirSync(here)
  .filter((n) => n.endsWith('.bench.ts'))
  .sort()) {
  const m = (await import(join(here, f))) as { suite?: Suite; suites?: Suite[] };
  if (m.suite) suites.push(m.suite);
  if (m.suites) suites.push(...m.suites);
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const filters = args.filter((a) => !a.startsWith('--'));
const bandwidthGBs = await measureBandwidthGBs();
const ctx: BenchContext = { bandwidthGBs, quick, floorMs: (bytes) => (bytes / (bandwidthGBs * 1e9)) * 1000 };
console.log(
  `# lora-edge benchmarks\n\nNode ${process.version}, ${(await import('node:os')).cpus()[0]?.model ?? 'cpu'}; measured copy bandwidth ${bandwidthGBs.toFixed(1)} GB/s (read + write).`,
);
for (const s of suites) {
  if (filters.length && !filters.some((f) => s.title.toLowerCase().includes(f.toLowerCase()))) continue;
  printTable(s.title, await s.run(ctx));
}
