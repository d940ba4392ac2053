import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, readBytes, readJson, STORIES } from '../../../test/fixtures.ts';
import { mixTerms } from '../lora/mix.ts';
import { parseModelConfig } from '../model/config.ts';
import { loadLoraAdapter } from '../peft/adapter.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { greedy } from './forward.ts';
import { loadLlamaWeights, withAdapters } from './weights.ts';

const config = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));
const st = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));
const base = loadLlamaWeights(config, (n) => (st.has(n) ? st.tensor(n) : undefined));
const adapter = (name: string) =>
  loadLoraAdapter({
    configText: readFileSync(join(ADAPTERS, name, 'adapter_config.json'), 'utf8'),
    weights: readBytes(join(ADAPTERS, name, 'adapter_model.safetensors')),
  });

interface Case {
  prompt_ids: number[];
  greedy_ids: number[];
  last_prompt_logits: number[];
}

function maxAbsDiff(a: Float32Array, b: number[]): number {
  return b.reduce((m, v, i) => Math.max(m, Math.abs((a[i] as number) - v)), 0);
}

describe('reference decoder on stories260k', () => {
  const ref = readJson<{ cases: Case[] }>(join(STORIES, 'reference.json'));
  it.each(ref.cases.map((c, i) => [i, c] as const))('prompt %i: greedy ids equal llama2.c, first logits within 1e-4', (_, c) => {
    const { ids, firstLogits } = greedy(base, c.prompt_ids, c.greedy_ids.length);
    expect(ids).toEqual(c.greedy_ids);
    expect(maxAbsDiff(firstLogits, c.last_prompt_logits)).toBeLessThan(1e-4);
  });
});

describe.each(ALL_ADAPTERS)('reference decoder with %s', (name) => {
  const ref = readJson<{ generations: { prompt_ids: number[]; greedy_ids_merged: number[]; last_prompt_logits_merged: number[] }[] }>(
    join(ADAPTERS, name, 'reference.json'),
  );
  const terms = mixTerms([{ name, adapter: adapter(name), weight: 1 }]);
  it.each(['merged', 'unmerged'] as const)('%s greedy ids equal PEFT', (mode) => {
    const w = withAdapters(base, terms, mode);
    for (const g of ref.generations) {
      const { ids, firstLogits } = greedy(w, g.prompt_ids, g.greedy_ids_merged.length);
      expect(ids).toEqual(g.greedy_ids_merged);
      expect(maxAbsDiff(firstLogits, g.last_prompt_logits_merged)).toBeLessThan(2e-4);
    }
  });
});

describe('weighted three-adapter mix', () => {
  const ref = readJson<{ adapters: string[]; weights: number[]; prompt_ids: number[]; greedy_ids_unmerged: number[] }>(
    join(ADAPTERS, 'mixes', 'reference.json'),
  );
  const terms = mixTerms(ref.adapters.map((n, i) => ({ name: n, adapter: adapter(n), weight: ref.weights[i] as number })));
  it.each(['merged', 'unmerged'] as const)('%s gives the reference ids', (mode) => {
    expect(greedy(withAdapters(base, terms, mode), ref.prompt_ids, ref.greedy_ids_unmerged.length).ids).toEqual(ref.greedy_ids_unmerged);
  });
});
