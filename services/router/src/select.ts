/**
 * Which base model and which adapter mix serve a request (DESIGN, "A request's way", step 3):
 * the `adapters` field, else what `model` names (`base:adapter`, an adapter, an alias route with
 * its weighted canary split), else the tenant's default adapter, else retrieval by similarity of
 * the prompt to each visible adapter's example prompts, else the base alone.
 *
 * Another tenant's private adapter is never resolved, listed or hinted at: it fails exactly as an
 * unknown name does.
 */
import { ApiError, adapterNotFound, invalid, modelNotFound } from './http/errors.ts';
import {
  type AdapterMixEntry,
  type AdapterRecord,
  type Alias,
  type BaseModelRecord,
  listAllKeys,
  pickAliasRoute,
  type Registry,
  RetrievalIndex,
  registryKeys,
  retrieveMix,
  type SelectionSource,
  stickyUniform,
  type Tenant,
} from './lib.ts';

export interface MixItem {
  adapter: AdapterRecord;
  weight: number;
}

export interface Selection {
  base: BaseModelRecord;
  mix: MixItem[];
  source: SelectionSource;
  alias?: string;
}

export interface SelectInput {
  model: string;
  adapters?: AdapterMixEntry[] | undefined;
  /** Keeps a user on one side of an alias's split; a random draw when absent. */
  user?: string | undefined;
  /** The prompt as text, for retrieval; undefined when there is none (token-id prompts). */
  promptText?: (() => string | undefined) | undefined;
}

export interface RetrievalSettings {
  topK: number;
  minScore: number;
}

/** What `model` names, before any mix is chosen. */
type Named =
  | { kind: 'base'; base: BaseModelRecord }
  | { kind: 'adapter'; base: BaseModelRecord; adapter: AdapterRecord }
  | { kind: 'alias'; alias: Alias };

async function baseOf(reg: Registry, id: string, model: string): Promise<BaseModelRecord> {
  const base = await reg.getModel(id);
  // A registered adapter on a base that has since gone: to the caller the model does not exist.
  if (!base) throw modelNotFound(model);
  return base;
}

async function resolveNamed(reg: Registry, tenant: string, model: string): Promise<Named> {
  const colon = model.indexOf(':');
  if (colon >= 0) {
    const baseId = model.slice(0, colon);
    const ref = model.slice(colon + 1);
    const base = await reg.getModel(baseId);
    if (!base) throw modelNotFound(baseId);
    const adapter = await reg.resolveAdapter(tenant, ref);
    if (!adapter) throw adapterNotFound(ref, 'model');
    if (adapter.base !== base.id)
      throw new ApiError(
        400,
        'adapter_base_mismatch',
        `The adapter \`${adapter.id}\` was made for \`${adapter.base}\`, not \`${base.id}\`.`,
        'model',
      );
    return { kind: 'adapter', base, adapter };
  }
  const base = await reg.getModel(model);
  if (base) return { kind: 'base', base };
  const alias = await reg.getAlias(tenant, model);
  if (alias) return { kind: 'alias', alias };
  // vLLM lists (and accepts) an adapter by its own name.
  const adapter = await reg.resolveAdapter(tenant, model);
  if (adapter) return { kind: 'adapter', base: await baseOf(reg, adapter.base, model), adapter };
  throw modelNotFound(model);
}

/** The mix entries resolved, duplicates summed, weights checked (finite, not summing to zero). */
export async function resolveMix(
  reg: Registry,
  tenant: string,
  entries: readonly AdapterMixEntry[],
  param: string,
  /** Where each entry's problems are reported: `adapters[i]` for a request's own mix, the alias's `model` for a route. */
  entryParam: (i: number, field: 'id' | 'weight') => string = (i, field) => `${param}[${i}].${field}`,
): Promise<MixItem[]> {
  const out: MixItem[] = [];
  for (const [i, e] of entries.entries()) {
    if (!Number.isFinite(e.weight))
      throw invalid(entryParam(i, 'weight'), `The weight of \`${e.id}\` must be a finite number.`, 'adapter_weight_invalid');
    const adapter = await reg.resolveAdapter(tenant, e.id);
    if (!adapter) throw adapterNotFound(e.id, entryParam(i, 'id'));
    const same = out.find((m) => m.adapter.id === adapter.id);
    if (same) same.weight += e.weight;
    else out.push({ adapter, weight: e.weight });
  }
  checkWeights(out, param);
  return out;
}

function checkWeights(mix: readonly MixItem[], param: string): void {
  if (mix.length === 0) return;
  const sum = mix.reduce((s, m) => s + m.weight, 0);
  if (!Number.isFinite(sum)) throw invalid(param, 'The adapter weights must be finite.', 'adapter_weight_invalid');
  if (sum === 0) throw invalid(param, 'The adapter weights sum to zero.', 'adapter_weight_invalid');
}

function checkBase(mix: readonly MixItem[], base: BaseModelRecord, param: string): void {
  for (const m of mix) {
    if (m.adapter.base !== base.id)
      throw new ApiError(
        400,
        'adapter_base_mismatch',
        `The adapter \`${m.adapter.id}\` was made for \`${m.adapter.base}\`, not \`${base.id}\`.`,
        param,
      );
  }
}

/** Adapters the caller may use: its own, and every other tenant's shared ones. */
export async function visibleAdapters(reg: Registry, tenant: string): Promise<AdapterRecord[]> {
  const own = await reg.listAdapters(tenant);
  const others: AdapterRecord[] = [];
  for (const key of await listAllKeys(reg.kv, 'adapter/')) {
    if (key.startsWith(registryKeys.adapters(tenant))) continue;
    const [, t, name] = key.split('/');
    if (!t || !name) continue;
    const a = await reg.getAdapter(t, name).catch(() => undefined);
    if (a && a.visibility === 'shared') others.push(a);
  }
  return [...own, ...others];
}

async function retrieve(
  reg: Registry,
  tenant: string,
  base: BaseModelRecord,
  text: string,
  settings: RetrievalSettings,
): Promise<MixItem[]> {
  const candidates = (await visibleAdapters(reg, tenant)).filter((a) => a.base === base.id && a.examples.length > 0);
  if (candidates.length === 0) return [];
  const index = new RetrievalIndex(candidates.map((a) => ({ id: a.id, examples: a.examples })));
  const byId = new Map(candidates.map((a) => [a.id, a]));
  return retrieveMix(index, text, { topK: settings.topK, minScore: settings.minScore }).map((h) => ({
    adapter: byId.get(h.id) as AdapterRecord,
    weight: h.weight,
  }));
}

export async function select(reg: Registry, tenant: Tenant, input: SelectInput, retrieval: RetrievalSettings): Promise<Selection> {
  const named = await resolveNamed(reg, tenant.id, input.model);
  if (input.adapters !== undefined) {
    if (named.kind !== 'base')
      throw invalid('adapters', '`adapters` needs a base model in `model`, not an adapter or an alias: name the whole mix in `adapters`.');
    const mix = await resolveMix(reg, tenant.id, input.adapters, 'adapters');
    checkBase(mix, named.base, 'adapters');
    return { base: named.base, mix, source: 'explicit' };
  }
  if (named.kind === 'adapter') return { base: named.base, mix: [{ adapter: named.adapter, weight: 1 }], source: 'model' };
  if (named.kind === 'alias') {
    const u = input.user ? await stickyUniform(`${tenant.id}/${named.alias.name}/${input.user}`) : Math.random();
    const route = pickAliasRoute(named.alias, u);
    const mix = await resolveMix(
      reg,
      tenant.id,
      route.mix.map((m) => ({ id: m.adapter, weight: m.weight })),
      'model',
      () => 'model',
    );
    const baseId = route.base ?? mix[0]?.adapter.base;
    if (!baseId) throw modelNotFound(input.model);
    const base = await baseOf(reg, baseId, input.model);
    checkBase(mix, base, 'model');
    return { base, mix, source: 'alias', alias: named.alias.name };
  }
  const { base } = named;
  if (tenant.default_adapter) {
    const adapter = await reg.resolveAdapter(tenant.id, tenant.default_adapter);
    // A default made for another base does not apply to this one.
    if (adapter && adapter.base === base.id) return { base, mix: [{ adapter, weight: 1 }], source: 'default' };
  }
  const text = input.promptText?.();
  if (text && retrieval.topK > 0) {
    const mix = await retrieve(reg, tenant.id, base, text, retrieval);
    if (mix.length > 0) return { base, mix, source: 'retrieval' };
  }
  return { base, mix: [], source: 'none' };
}
