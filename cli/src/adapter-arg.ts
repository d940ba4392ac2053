import { UsageError } from './errors.ts';

export interface AdapterArg {
  dir: string;
  weight: number;
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * `--adapter <dir>[:weight]`: the weight follows the LAST colon and may be negative. A suffix
 * that is not a number belongs to the path (so `dir:with:colons` still works).
 */
export function parseAdapterArg(value: string): AdapterArg {
  const i = value.lastIndexOf(':');
  if (i < 0) return { dir: value, weight: 1 };
  const suffix = value.slice(i + 1);
  if (!NUMBER.test(suffix)) return { dir: value, weight: 1 };
  const weight = Number(suffix);
  const dir = value.slice(0, i);
  if (!dir) throw new UsageError(`--adapter "${value}": missing the directory before the weight`);
  if (!Number.isFinite(weight)) throw new UsageError(`--adapter "${value}": weight is not a finite number`);
  return { dir, weight };
}
