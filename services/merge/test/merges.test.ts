import { env } from 'cloudflare:workers';
import {
  bytesOf,
  fuseModule,
  loadLoraAdapter,
  type MergeAdapter,
  mergeAdapters,
  mixTerms,
  quantizeNf4,
  readSafetensors,
  seededRandomSource,
  toBnbTensors,
  toFloat32,
} from '@lora-edge/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import mixRef from '../../../fixtures/adapters/mixes/reference.json';
import type { JobView } from '../src/jobs/types.ts';
import { type ArtifactManifest, artifactKey, listAll } from '../src/lib.ts';
import {
  ADMIN,
  auth,
  call,
  errorOf,
  FIXTURES,
  type FixtureName,
  jsonInit,
  newTenant,
  registerStories,
  STORIES,
  uploadOk,
  waitForJob,
} from './helpers.ts';

interface MergeAnswer {
  job: JobView;
  recipe: string;
  artifact: ArtifactManifest | null;
}

beforeAll(async () => {
  await registerStories();
});

async function artifactFile(recipe: string, file: string): Promise<Uint8Array> {
  const o = await env.BLOBS.get(artifactKey(recipe, file));
  expect(o, file).not.toBeNull();
  return new Uint8Array(await o!.arrayBuffer());
}

/** The merge computed here, independently: shared's mergeAdapters per module, adapters in digest order. */
function expectedMerge(inputs: { fixture: FixtureName; digest: string; weight: number }[], opts: Parameters<typeof mergeAdapters>[1]) {
  const sorted = [...inputs].sort((a, b) => (a.digest < b.digest ? -1 : 1));
  const adapters = sorted.map((i) => ({
    ...i,
    adapter: loadLoraAdapter({ configText: FIXTURES[i.fixture].config, weights: FIXTURES[i.fixture].weights }),
  }));
  const common = [...adapters[0]!.adapter.modules.keys()]
    .filter((m) => adapters.every((a) => a.adapter.modules.has(m)))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const random = opts.random ?? seededRandomSource(opts.seed ?? 0);
  return new Map(
    common.map((module) => {
      const parts: MergeAdapter[] = adapters.map((a) => {
        const m = a.adapter.modules.get(module)!;
        return { name: a.fixture, lora_A: toFloat32(m.A), lora_B: toFloat32(m.B), r: m.r, scaling: m.scaling, weight: a.weight };
      });
      return [module, mergeAdapters(parts, { ...opts, random })];
    }),
  );
}

describe('merge jobs', () => {
  it('merges to a PEFT adapter equal to shared/mergeAdapters, with the job going queued → running → succeeded', async () => {
    const t = await newTenant();
    const all = await uploadOk(t.key, 'all', 'tiny-all-r8');
    const lori = await uploadOk(t.key, 'lori', 'tiny-lori-r8');
    const res = await call(
      '/v1/merges',
      jsonInit(
        'POST',
        {
          base: 'stories260k',
          adapters: [
            { id: 'all', weight: 0.7 },
            { id: 'lori', weight: 0.3 },
          ],
          method: 'linear',
        },
        t.key,
      ),
    );
    expect(res.status, await res.clone().text()).toBe(202);
    const first = (await res.json()) as MergeAnswer;
    expect(first.job).toMatchObject({ id: first.recipe, kind: 'merge', state: 'queued', progress: 0 });
    expect(first.artifact).toBeNull();
    expect(await errorOf(await call(`/v1/artifacts/${first.recipe}`, auth(t.key)))).toMatchObject({
      status: 404,
      code: 'artifact_not_found',
    });

    const job = await waitForJob(t.key, first.recipe);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');
    expect(job.history.map((h) => h.state)).toEqual(['queued', 'running', 'succeeded']);
    expect(job).toMatchObject({ progress: 1, attempts: 1, result: { artifact: first.recipe } });

    const manifest = (await (await call(`/v1/artifacts/${first.recipe}`, auth(t.key))).json()) as ArtifactManifest;
    expect(manifest).toMatchObject({ recipe: first.recipe, kind: 'adapter', spec: { method: 'linear', semantics: 'peft' } });
    expect(manifest.files.map((f) => f.name)).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    // The manifest went in last.
    const objects = await listAll(env.BLOBS, `artifacts/${first.recipe}/`);
    const manifestAt = objects.find((o) => o.key.endsWith('manifest.json'))!.uploaded!.getTime();
    for (const o of objects) expect(o.uploaded!.getTime()).toBeLessThanOrEqual(manifestAt);

    const config = JSON.parse(new TextDecoder().decode(await artifactFile(first.recipe, 'adapter_config.json')));
    expect(config).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 8, target_modules: ['down_proj', 'q_proj', 'up_proj', 'v_proj'] });
    const weights = await artifactFile(first.recipe, 'adapter_model.safetensors');
    const served = new Uint8Array(await (await call(`/v1/artifacts/${first.recipe}/adapter_model.safetensors`, auth(t.key))).arrayBuffer());
    expect(served).toEqual(weights);

    const st = readSafetensors(weights);
    const want = expectedMerge(
      [
        { fixture: 'tiny-all-r8', digest: all.digest, weight: 0.7 },
        { fixture: 'tiny-lori-r8', digest: lori.digest, weight: 0.3 },
      ],
      { method: 'linear' },
    );
    expect(want.size).toBe(20);
    expect(st.names()).toHaveLength(40);
    for (const [module, r] of want) {
      expect(toFloat32(st.tensor(`base_model.model.${module}.lora_A.weight`))).toEqual(r.lora_A);
      expect(toFloat32(st.tensor(`base_model.model.${module}.lora_B.weight`))).toEqual(r.lora_B);
    }

    // The same recipe, spelled differently, is answered from the cache.
    const again = await call(
      '/v1/merges',
      jsonInit(
        'POST',
        {
          base: 'stories260k',
          adapters: [
            { id: `${t.id}/lori`, weight: 0.3 },
            { id: 'all', weight: 0.7 },
          ],
          options: { seed: 9 },
        },
        t.key,
      ),
    );
    expect(again.status).toBe(200);
    const cached = (await again.json()) as MergeAnswer;
    expect(cached.recipe).toBe(first.recipe);
    expect(cached.artifact?.files).toEqual(manifest.files);
    expect(cached.job.attempts).toBe(1);

    // Another tenant sees neither the job nor the artifact.
    const other = await newTenant();
    expect(await errorOf(await call(`/v1/jobs/${first.recipe}`, auth(other.key)))).toMatchObject({ status: 404, code: 'job_not_found' });
    expect(await errorOf(await call(`/v1/artifacts/${first.recipe}`, auth(other.key)))).toMatchObject({
      status: 404,
      code: 'artifact_not_found',
    });
  });

  it('fuses a weighted mix into the base like the golden reference, untouched tensors bit for bit', async () => {
    const t = await newTenant();
    for (const f of ['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8'] as const) await uploadOk(t.key, f, f);
    const body = { base: 'stories260k', adapters: mixRef.adapters.map((a, i) => ({ id: a, weight: mixRef.weights[i] })), output: 'fused' };
    const res = await call('/v1/merges', jsonInit('POST', body, t.key));
    expect(res.status, await res.clone().text()).toBe(202);
    const { recipe } = (await res.json()) as MergeAnswer;
    const job = await waitForJob(t.key, recipe);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');

    const fused = readSafetensors(await artifactFile(recipe, 'model.safetensors'));
    const base = readSafetensors(STORIES.weights);
    const got = toFloat32(fused.tensor(`${mixRef.fused_module.name}.weight`));
    const ref = mixRef.fused_module.fused_weight.flat();
    let err = 0;
    let scale = 0;
    ref.forEach((v, i) => {
      err = Math.max(err, Math.abs((got[i] as number) - v));
      scale = Math.max(scale, Math.abs(v));
    });
    expect(err / scale).toBeLessThan(1e-6);
    expect(fused.tensor('model.embed_tokens.weight').data).toEqual(base.tensor('model.embed_tokens.weight').data);
    expect(fused.tensor('model.layers.0.mlp.gate_proj.weight').data).not.toEqual(base.tensor('model.layers.0.mlp.gate_proj.weight').data);
    expect(fused.names().sort()).toEqual(base.names().sort());
    const config = JSON.parse(new TextDecoder().decode(await artifactFile(recipe, 'config.json')));
    expect(config).toEqual(JSON.parse(STORIES.config));
  });

  it('fuses then quantizes to bitsandbytes NF4 (fused in full precision, quantized once)', async () => {
    const t = await newTenant();
    const qv = await uploadOk(t.key, 'qv', 'tiny-qv-r4');
    const res = await call(
      '/v1/merges',
      jsonInit(
        'POST',
        { base: 'stories260k', adapters: [{ id: 'qv', weight: 0.8 }], output: 'fused-nf4', options: { double_quant: true } },
        t.key,
      ),
    );
    expect(res.status, await res.clone().text()).toBe(202);
    const { recipe } = (await res.json()) as MergeAnswer;
    const job = await waitForJob(t.key, recipe);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');

    const out = readSafetensors(await artifactFile(recipe, 'model.safetensors'));
    const config = JSON.parse(new TextDecoder().decode(await artifactFile(recipe, 'config.json')));
    expect(config.quantization_config).toMatchObject({
      quant_method: 'bitsandbytes',
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
    });

    // Independently: fuse with shared's fuseModule, quantize with quantizeNf4; the bytes must agree.
    const base = readSafetensors(STORIES.weights);
    const adapter = loadLoraAdapter({ configText: FIXTURES['tiny-qv-r4'].config, weights: FIXTURES['tiny-qv-r4'].weights });
    const terms = mixTerms([{ name: qv.id, adapter, weight: 0.8 }]);
    for (const name of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.4.mlp.down_proj.weight']) {
      const W = base.tensor(name);
      const moduleTerms = terms.get(name.slice(0, -'.weight'.length));
      const [rows, cols] = W.shape as [number, number];
      const fusedW = moduleTerms ? fuseModule(toFloat32(W), rows, cols, moduleTerms) : toFloat32(W);
      for (const b of toBnbTensors(
        name,
        quantizeNf4({ dtype: 'F32', shape: W.shape, data: bytesOf(fusedW) }, { blocksize: 64, doubleQuant: true, name }),
      )) {
        expect(out.tensor(b.name).data, b.name).toEqual(b.data);
      }
    }
    expect(out.tensor('model.norm.weight').data).toEqual(base.tensor('model.norm.weight').data);
    expect(out.tensor('model.layers.0.self_attn.q_proj.weight.absmax').dtype).toBe('U8');
    expect(out.has('model.layers.0.self_attn.q_proj.weight.nested_absmax')).toBe(true);
  });

  it('sends jobs too big for a Worker to the GPU runners; refuses them when kept on the edge', async () => {
    const t = await newTenant();
    await registerStories('stories-big');
    // The same files, recorded as a 100 MB base: the estimate is what matters.
    const rec = JSON.parse((await env.REGISTRY.get('model/stories-big')) as string);
    await env.REGISTRY.put('model/stories-big', JSON.stringify({ ...rec, size: 100 * 1024 * 1024 }));
    await uploadOk(t.key, 'qv', 'tiny-qv-r4', { base: 'stories-big' });
    const body = { base: 'stories-big', adapters: [{ id: 'qv' }], output: 'fused' };
    const e = await errorOf(await call('/v1/merges', jsonInit('POST', { ...body, placement: 'edge' }, t.key)));
    expect(e).toMatchObject({ status: 422, code: 'runner_required' });
    // auto: queued for a GPU runner (none runs in this test; the build itself is tested end to end).
    const queued = await call('/v1/merges', jsonInit('POST', body, t.key));
    expect(queued.status).toBe(202);
    // Adapter-only merges stay small.
    expect((await call('/v1/merges', jsonInit('POST', { base: 'stories-big', adapters: [{ id: 'qv' }] }, t.key))).status).toBe(202);
  });

  const bad: [string, Record<string, unknown>, number, string][] = [
    ['an unknown adapter', { adapters: [{ id: 'nope' }] }, 422, 'adapter_unknown'],
    ['an unknown base', { base: 'nope' }, 422, 'base_model_unknown'],
    ['an unknown method', { method: 'average' }, 400, 'invalid_request'],
    ['ties without a density', { method: 'ties' }, 422, 'merge_invalid'],
    ['a DoRA adapter in a merge', { adapters: [{ id: 'qv' }, { id: 'dora' }] }, 422, 'adapter_unsupported'],
    ['a weighted DoRA fuse', { adapters: [{ id: 'dora', weight: 0.5 }], output: 'fused' }, 422, 'adapter_weight_invalid'],
    [
      'weights that cancel',
      {
        adapters: [
          { id: 'qv', weight: 1 },
          { id: 'qv', weight: -1 },
        ],
      },
      422,
      'adapter_weight_invalid',
    ],
    ['a bad NF4 blocksize', { output: 'fused-nf4', options: { blocksize: 48 } }, 400, 'invalid_request'],
    ['an unknown output', { output: 'gguf' }, 400, 'invalid_request'],
  ];
  for (const [what, patch, status, code] of bad) {
    it(`refuses ${what}: ${status} ${code}`, async () => {
      const t = await newTenant();
      await uploadOk(t.key, 'qv', 'tiny-qv-r4');
      await uploadOk(t.key, 'dora', 'tiny-dora-r4');
      const res = await call('/v1/merges', jsonInit('POST', { base: 'stories260k', adapters: [{ id: 'qv' }], ...patch }, t.key));
      // Refused while planning, before any job object or queue message exists.
      expect(await errorOf(res)).toMatchObject({ status, code });
    });
  }

  it('needs an API key and valid ids', async () => {
    expect((await call('/v1/merges', jsonInit('POST', {}))).status).toBe(401);
    const t = await newTenant();
    expect(await errorOf(await call('/v1/jobs/xyz', auth(t.key)))).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(await errorOf(await call(`/v1/jobs/${'0'.repeat(64)}`, auth(t.key)))).toMatchObject({ status: 404, code: 'job_not_found' });
    expect((await call('/admin/tenants', jsonInit('POST', { id: 'x' }, 'wrong'))).status).toBe(401);
    expect((await call('/admin/tenants', jsonInit('POST', { id: 'x' }, ADMIN))).status).toBe(201);
    expect(await errorOf(await call('/admin/tenants', jsonInit('POST', { id: 'x' }, ADMIN)))).toMatchObject({
      status: 409,
      code: 'tenant_exists',
    });
  });
});
