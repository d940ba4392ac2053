import { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { tensorByteLength } from '../tensor/tensor.ts';
import type { TensorSpec } from './write.ts';

export const SHARD_INDEX_FILE = 'model.safetensors.index.json';

const ShardIndexSchema = z.looseObject({
  metadata: z.looseObject({ total_size: z.number().int().nonnegative().optional() }).optional(),
  weight_map: z.record(z.string(), z.string().regex(/^[^/\\]+\.safetensors$/, 'must be a .safetensors file name in the same folder')),
});

export type ShardIndex = z.infer<typeof ShardIndexSchema>;

/** Parses `model.safetensors.index.json`: which shard file holds each tensor. */
export function parseShardIndex(text: string, file = SHARD_INDEX_FILE): ShardIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LoraEdgeError('invalid_json', `not valid JSON (${(e as Error).message})`, { file });
  }
  const r = ShardIndexSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new LoraEdgeError('sharded_index_invalid', issue?.message ?? 'invalid index', { file, field: issue?.path.join('.') });
  }
  return r.data;
}

/** The shard files an index names, in first-appearance order. */
export function shardFiles(index: ShardIndex): string[] {
  return [...new Set(Object.values(index.weight_map))];
}

export function shardFileName(i: number, n: number): string {
  const pad = (k: number) => String(k).padStart(5, '0');
  return `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
}

/** Splits tensors (kept in order) into shards of at most `maxShardBytes` each, as transformers names them. */
export function planShards(
  specs: readonly TensorSpec[],
  maxShardBytes: number,
): { files: { name: string; specs: TensorSpec[] }[]; index: ShardIndex } {
  const groups: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let size = 0;
  let total = 0;
  for (const s of specs) {
    const bytes = tensorByteLength(s.dtype, s.shape);
    total += bytes;
    if (current.length > 0 && size + bytes > maxShardBytes) {
      groups.push(current);
      current = [];
      size = 0;
    }
    current.push(s);
    size += bytes;
  }
  if (current.length > 0 || groups.length === 0) groups.push(current);
  if (groups.length === 1) {
    return {
      files: [{ name: 'model.safetensors', specs: groups[0] as TensorSpec[] }],
      index: { metadata: { total_size: total }, weight_map: {} },
    };
  }
  const files = groups.map((g, i) => ({ name: shardFileName(i, groups.length), specs: g }));
  const weight_map: Record<string, string> = {};
  for (const f of files) for (const s of f.specs) weight_map[s.name] = f.name;
  return { files, index: { metadata: { total_size: total }, weight_map } };
}
