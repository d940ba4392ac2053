import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readBytes, STORIES } from '../../../test/fixtures.ts';
import { LoraEdgeError } from '../errors.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { parseModelConfig } from './config.ts';
import { assertWeights, checkWeights, expectedTensors, linearShape } from './weights.ts';

const configText = readFileSync(join(STORIES, 'config.json'), 'utf8');
const weights = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));

describe('stories260k config', () => {
  const c = parseModelConfig(configText);

  it('derives shapes: head_dim, GQA kv heads, tied embeddings', () => {
    expect(c).toMatchObject({
      hiddenSize: 64,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      numLayers: 5,
      tieWordEmbeddings: true,
    });
    expect(linearShape(c, 'model.layers.0.self_attn.k_proj')).toEqual([32, 64]);
    expect(linearShape(c, 'model.layers.4.mlp.down_proj')).toEqual([64, 172]);
    expect(linearShape(c, 'model.layers.5.mlp.down_proj')).toBeUndefined();
  });

  it('validates its weights', () => {
    expect(checkWeights(c, weights.header.byName)).toEqual([]);
    expect(expectedTensors(c).filter((e) => !e.optional)).toHaveLength(47);
  });

  it('names a missing tensor, a wrong shape and a stray tensor', () => {
    const m = new Map(weights.header.byName);
    m.delete('model.layers.2.mlp.up_proj.weight');
    m.set('model.layers.0.self_attn.q_proj.weight', { dtype: 'F32', shape: [64, 32] } as never);
    m.set('model.layers.9.extra.weight', { dtype: 'F32', shape: [1] } as never);
    expect(checkWeights(c, m)).toEqual([
      { tensor: 'model.layers.0.self_attn.q_proj.weight', problem: 'shape [64,32] but the config implies [64,64]' },
      { tensor: 'model.layers.2.mlp.up_proj.weight', problem: 'missing' },
      { tensor: 'model.layers.9.extra.weight', problem: 'not part of this architecture' },
    ]);
    expect(() => assertWeights(c, m, 'model.safetensors')).toThrow(
      /model.safetensors, tensor "model.layers.0.self_attn.q_proj.weight": shape/,
    );
  });

  it('an untied model needs lm_head', () => {
    const untied = parseModelConfig(configText.replace('"tie_word_embeddings": true', '"tie_word_embeddings": false'));
    expect(checkWeights(untied, weights.header.byName)).toEqual([{ tensor: 'lm_head.weight', problem: 'missing' }]);
  });
});

describe('Llama-family configs', () => {
  const base = JSON.parse(configText) as Record<string, unknown>;
  const parse = (patch: Record<string, unknown>) => parseModelConfig(JSON.stringify({ ...base, ...patch }));

  it('qwen2 has q/k/v biases; mistral and llama do not by default', () => {
    expect(parse({ model_type: 'qwen2' }).qkvBias).toBe(true);
    expect(parse({ model_type: 'mistral', sliding_window: 4096 }).qkvBias).toBe(false);
  });
  it('defaults head_dim and kv heads like transformers', () => {
    const c = parse({ head_dim: undefined, num_key_value_heads: undefined });
    expect(c.headDim).toBe(8);
    expect(c.numKvHeads).toBe(8);
  });
  it.each([
    [{ model_type: 'gpt2' }, 'model_type'],
    [{ hidden_size: undefined }, 'hidden_size'],
    [{ num_key_value_heads: 3 }, 'num_key_value_heads'],
    [{ vocab_size: -1 }, 'vocab_size'],
    [{ hidden_act: 'gelu' }, 'hidden_act'],
  ])('refuses %j naming %s', (patch, field) => {
    try {
      parse(patch);
      throw new Error('no error');
    } catch (e) {
      expect(e).toBeInstanceOf(LoraEdgeError);
      expect((e as LoraEdgeError).field).toBe(field);
      expect((e as Error).message).toContain('config.json');
    }
  });
  it('refuses invalid JSON', () => expect(() => parseModelConfig('{"hidden_size": ')).toThrow(/config.json: not valid JSON/));

  it('fuzz: any JSON value gives a config or a typed error', () => {
    const field = fc.constantFrom(...Object.keys(base));
    fc.assert(
      fc.property(
        fc.dictionary(field, fc.oneof(fc.anything(), fc.integer(), fc.double(), fc.constant(null))),
        fc.boolean(),
        (patch, raw) => {
          const text = raw ? JSON.stringify(patch) : JSON.stringify({ ...base, ...patch });
          try {
            parseModelConfig(text);
          } catch (e) {
            if (!(e instanceof LoraEdgeError)) throw e;
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
