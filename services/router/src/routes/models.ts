/**
 * GET /v1/models[/:model]: base models, the adapters the caller may use (their own and other
 * tenants' shared ones) and the caller's aliases, as vLLM lists them: an adapter's `parent` is its
 * base. Every id listed is a valid `model`. Other tenants' private adapters and aliases never appear.
 */
import { Hono } from 'hono';
import { type AppEnv, registry } from '../http/auth.ts';
import { modelNotFound } from '../http/errors.ts';
import {
  type AdapterRecord,
  type Alias,
  type BaseModelRecord,
  listAllKeys,
  type ModelObject,
  modelKey,
  type Registry,
  registryKeys,
} from '../lib.ts';
import { targetOf } from '../plan.ts';
import { visibleAdapters } from '../select.ts';
import { TOKENIZER_FILE } from '../tokenizer.ts';

const seconds = (iso: string) => Math.floor((Date.parse(iso) || 0) / 1000);

async function baseModels(reg: Registry): Promise<BaseModelRecord[]> {
  const out: BaseModelRecord[] = [];
  for (const key of await listAllKeys(reg.kv, 'model/')) {
    const m = await reg.getModel(decodeURIComponent(key.slice('model/'.length)));
    if (m) out.push(m);
  }
  return out;
}

async function aliases(reg: Registry, tenant: string): Promise<Alias[]> {
  const out: Alias[] = [];
  for (const key of await listAllKeys(reg.kv, registryKeys.alias(tenant, ''))) {
    const a = await reg.getAlias(tenant, key.slice(registryKeys.alias(tenant, '').length));
    if (a) out.push(a);
  }
  return out;
}

async function baseObject(env: Env, m: BaseModelRecord): Promise<ModelObject> {
  const ctx = Number(m.config.max_position_embeddings);
  return {
    id: m.id,
    object: 'model',
    created: seconds(m.created_at),
    owned_by: 'lora-edge',
    root: m.id,
    parent: null,
    ...(Number.isInteger(ctx) && ctx > 0 ? { max_model_len: ctx } : {}),
    lora_edge: {
      kind: 'base',
      digest: m.digest,
      edge_eligible: m.edge_eligible,
      target: targetOf(m),
      has_tokenizer: (await env.BLOBS.head(modelKey(m.digest, TOKENIZER_FILE))) !== null,
    },
  };
}

function adapterObject(a: AdapterRecord, caller: string): ModelObject {
  const ref = a.tenant === caller ? a.name : a.id;
  return {
    id: `${a.base}:${ref}`,
    object: 'model',
    created: seconds(a.created_at),
    owned_by: a.tenant,
    root: a.id,
    parent: a.base,
    lora_edge: { kind: 'adapter', digest: a.digest, visibility: a.visibility },
  };
}

function aliasObject(a: Alias, bases: ReadonlyMap<string, string>): ModelObject {
  const first = a.routes[0];
  const parent = first?.base ?? bases.get(first?.mix[0]?.adapter ?? '') ?? null;
  return {
    id: a.name,
    object: 'model',
    created: seconds(a.updated_at),
    owned_by: a.tenant,
    root: a.name,
    parent,
    lora_edge: { kind: 'alias', routes: a.routes },
  };
}

async function listModels(env: Env, tenant: string): Promise<ModelObject[]> {
  const reg = registry(env);
  const [bases, adapters, own] = await Promise.all([baseModels(reg), visibleAdapters(reg, tenant), aliases(reg, tenant)]);
  const known = new Set(bases.map((b) => b.id));
  // An alias's adapters, by the refs it uses (`name` or `tenant/name`), to name its parent.
  const adapterBase = new Map<string, string>();
  for (const a of adapters) {
    adapterBase.set(a.id, a.base);
    if (a.tenant === tenant) adapterBase.set(a.name, a.base);
  }
  return [
    ...(await Promise.all(bases.map((b) => baseObject(env, b)))),
    ...adapters.filter((a) => known.has(a.base)).map((a) => adapterObject(a, tenant)),
    ...own.map((a) => aliasObject(a, adapterBase)),
  ];
}

export const modelRoutes = new Hono<AppEnv>();

modelRoutes.get('/models', async (c) => c.json({ object: 'list', data: await listModels(c.env, c.get('tenant').id) }));

modelRoutes.get('/models/:model{.+}', async (c) => {
  const id = c.req.param('model');
  const found = (await listModels(c.env, c.get('tenant').id)).find((m) => m.id === id);
  if (!found) throw modelNotFound(id);
  return c.json(found);
});
