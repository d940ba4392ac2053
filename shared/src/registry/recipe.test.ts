import { describe, expect, it } from 'vitest';
import type { LoraEdgeError } from '../errors.ts';
import { canonicalJson, canonicalRecipe, type Recipe, recipeKey } from './recipe.ts';

const d = (c: string) => c.repeat(64);
const base: Recipe = {
  base: d('0'),
  adapters: [
    { digest: d('b'), weight: 0.5 },
    { digest: d('a'), weight: 0.3 },
  ],
  method: 'linear',
  options: {},
  output: 'adapter',
};

describe('recipe key', () => {
  it('ignores adapter order, default spellings and options the method does not read', async () => {
    const k = await recipeKey(base);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    expect(await recipeKey({ ...base, adapters: [...base.adapters].reverse() })).toBe(k);
    expect(await recipeKey({ ...base, options: { exact: false, seed: 7, density: 0.5, majority_sign: 'frequency' } })).toBe(k);
    expect(await recipeKey({ ...base, options: { exact: true } })).not.toBe(k);
    expect(
      await recipeKey({
        ...base,
        adapters: [
          { digest: d('b'), weight: 0.5 },
          { digest: d('a'), weight: 0.31 },
        ],
      }),
    ).not.toBe(k);
    expect(await recipeKey({ ...base, output: 'fused' })).not.toBe(k);
  });

  it('is pinned: the router computes the same key from the same recipe', async () => {
    // Changing canonicalization orphans every cached artifact: bump RECIPE_VERSION instead.
    expect(canonicalJson(canonicalRecipe(base))).toBe(
      `{"adapters":[{"digest":"${d('a')}","weight":0.3},{"digest":"${d('b')}","weight":0.5}],"base":"${d('0')}","method":"linear","options":{"exact":false},"output":"adapter"}`,
    );
    expect(await recipeKey(base)).toBe(await recipeKey(JSON.parse(JSON.stringify(base))));
  });

  it('fills the defaults a method reads', () => {
    const c = canonicalRecipe({ ...base, method: 'dare_ties', options: { density: 0.5 } });
    expect(c.options).toEqual({ density: 0.5, exact: false, majority_sign: 'total', seed: 0 });
    const n = canonicalRecipe({ ...base, output: 'fused-nf4' });
    expect(n.options).toEqual({ exact: true, double_quant: false, blocksize: 64 });
  });

  it('treats fused linear mixes as the exact sum, whatever `exact` says', async () => {
    const fused = { ...base, output: 'fused' as const };
    expect(await recipeKey({ ...fused, options: { exact: false } })).toBe(await recipeKey({ ...fused, options: { exact: true } }));
  });

  it('refuses what cannot be merged', () => {
    const codeOf = (r: Recipe) => {
      try {
        canonicalRecipe(r);
        return 'ok';
      } catch (e) {
        return (e as LoraEdgeError).code;
      }
    };
    expect(codeOf({ ...base, method: 'ties' })).toBe('merge_invalid');
    expect(
      codeOf({
        ...base,
        adapters: [
          { digest: d('a'), weight: 1 },
          { digest: d('b'), weight: -1 },
        ],
      }),
    ).toBe('adapter_weight_invalid');
    expect(codeOf({ ...base, adapters: [] })).toBe('merge_invalid');
    expect(codeOf({ ...base, base: 'nope' })).toBe('merge_invalid');
    expect(codeOf({ ...base, options: { blocksize: 48 }, output: 'fused-nf4' })).toBe('merge_invalid');
    expect(codeOf({ ...base, options: { bogus: 1 } as never })).toBe('merge_invalid');
  });
});
