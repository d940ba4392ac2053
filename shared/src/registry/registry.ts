/**
 * The registry over a key-value store (Workers KV in the services, a Map in tests). Keys:
 *
 *   tenant/<id>                  Tenant
 *   apikey/<key id>              ApiKeyRecord (hash only)
 *   model/<url-encoded id>       BaseModelRecord
 *   adapter/<tenant>/<name>      AdapterRecord
 *   alias/<tenant>/<name>        Alias
 *   hits/<recipe sha>            HitCounter
 *   hfwatch/<url-encoded repo>/<tenant>/<name>   Watch
 *
 * KV is eventually consistent across locations and has no compare-and-set: what must be exact
 * (job state, locks, replay windows) lives in Durable Objects, not here.
 */
import type { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { type KeyValueStore, listAllKeys } from '../storage/store.ts';
import { apiKeyMatches, newApiKey, parseApiKey } from './api-keys.ts';
import {
  type AdapterRecord,
  AdapterRecordSchema,
  type Alias,
  AliasSchema,
  type ApiKeyRecord,
  ApiKeyRecordSchema,
  type BaseModelRecord,
  BaseModelRecordSchema,
  type HitCounter,
  HitCounterSchema,
  NAME_RE,
  TENANT_ID_RE,
  type Tenant,
  TenantSchema,
  type Watch,
  WatchSchema,
} from './schemas.ts';

/** Concurrent KV reads when listing records. */
const LIST_READS_AT_ONCE = 50;
export const registryKeys = {
  tenant: (id: string) => `tenant/${id}`,
  apiKey: (id: string) => `apikey/${id}`,
  model: (id: string) => `model/${encodeURIComponent(id)}`,
  adapter: (tenant: string, name: string) => `adapter/${tenant}/${name}`,
  adapters: (tenant: string) => `adapter/${tenant}/`,
  alias: (tenant: string, name: string) => `alias/${tenant}/${name}`,
  hits: (recipe: string) => `hits/${recipe}`,
  watch: (repo: string, tenant: string, name: string) => `hfwatch/${encodeURIComponent(repo)}/${tenant}/${name}`,
  watches: (repo: string) => `hfwatch/${encodeURIComponent(repo)}/`,
};

/** `name` (the caller's own) or `tenant/name`, split; undefined when neither shape fits. */
export function parseAdapterRef(ref: string, caller: string): { tenant: string; name: string } | undefined {
  const parts = ref.split('/');
  const [tenant, name] = parts.length === 1 ? [caller, parts[0] as string] : parts.length === 2 ? (parts as [string, string]) : [];
  if (tenant === undefined || name === undefined) return undefined;
  if (!TENANT_ID_RE.test(tenant) || !NAME_RE.test(name) || name.includes('..')) return undefined;
  return { tenant, name };
}

export function adapterId(tenant: string, name: string): string {
  return `${tenant}/${name}`;
}

export interface Authenticated {
  tenant: Tenant;
  keyId: string;
}

export class Registry {
  constructor(
    readonly kv: KeyValueStore,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private async read<S extends z.ZodType>(key: string, schema: S): Promise<z.output<S> | undefined> {
    const text = await this.kv.get(key);
    if (text === null) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new LoraEdgeError('registry_invalid', 'the stored value is not JSON', { field: key });
    }
    const r = schema.safeParse(json);
    if (!r.success)
      throw new LoraEdgeError('registry_invalid', `the stored value does not match its schema (${r.error.issues[0]?.message})`, {
        field: key,
      });
    return r.data;
  }

  private async write<S extends z.ZodType>(key: string, schema: S, value: z.input<S>): Promise<z.output<S>> {
    const parsed = schema.parse(value);
    await this.kv.put(key, JSON.stringify(parsed));
    return parsed;
  }

  // Tenants and API keys

  getTenant(id: string): Promise<Tenant | undefined> {
    return this.read(registryKeys.tenant(id), TenantSchema);
  }

  putTenant(t: Tenant): Promise<Tenant> {
    return this.write(registryKeys.tenant(t.id), TenantSchema, t);
  }

  /** A new key for the tenant; the plain key is returned once and never stored. */
  async issueApiKey(tenant: string, label?: string): Promise<{ key: string; record: ApiKeyRecord }> {
    const made = await newApiKey(tenant, this.now(), label);
    await this.write(registryKeys.apiKey(made.record.id), ApiKeyRecordSchema, made.record);
    return made;
  }

  async revokeApiKey(id: string): Promise<boolean> {
    const r = await this.read(registryKeys.apiKey(id), ApiKeyRecordSchema);
    if (!r) return false;
    await this.write(registryKeys.apiKey(id), ApiKeyRecordSchema, { ...r, revoked: true });
    return true;
  }

  /** The tenant a presented key belongs to; undefined for anything else (malformed, unknown, revoked, disabled). */
  async authenticate(presented: string): Promise<Authenticated | undefined> {
    const parsed = parseApiKey(presented);
    if (!parsed) return undefined;
    const record = await this.read(registryKeys.apiKey(parsed.id), ApiKeyRecordSchema);
    if (!record || !(await apiKeyMatches(parsed.key, record))) return undefined;
    const tenant = await this.getTenant(record.tenant);
    if (!tenant || tenant.disabled) return undefined;
    return { tenant, keyId: record.id };
  }

  // Base models

  getModel(id: string): Promise<BaseModelRecord | undefined> {
    return this.read(registryKeys.model(id), BaseModelRecordSchema);
  }

  putModel(m: BaseModelRecord): Promise<BaseModelRecord> {
    return this.write(registryKeys.model(m.id), BaseModelRecordSchema, m);
  }

  // Adapters

  getAdapter(tenant: string, name: string): Promise<AdapterRecord | undefined> {
    return this.read(registryKeys.adapter(tenant, name), AdapterRecordSchema);
  }

  async putAdapter(a: AdapterRecord): Promise<AdapterRecord> {
    if (a.id !== adapterId(a.tenant, a.name))
      throw new LoraEdgeError('registry_invalid', `adapter id must be ${adapterId(a.tenant, a.name)}`, { field: 'id' });
    return this.write(registryKeys.adapter(a.tenant, a.name), AdapterRecordSchema, a);
  }

  async deleteAdapter(tenant: string, name: string): Promise<void> {
    await this.kv.delete(registryKeys.adapter(tenant, name));
  }

  async listAdapters(tenant: string): Promise<AdapterRecord[]> {
    const keys = await listAllKeys(this.kv, registryKeys.adapters(tenant));
    const out: AdapterRecord[] = [];
    // Reads in parallel, a bounded number at a time: a tenant may hold thousands of adapters.
    for (let i = 0; i < keys.length; i += LIST_READS_AT_ONCE) {
      const records = await Promise.all(keys.slice(i, i + LIST_READS_AT_ONCE).map((k) => this.read(k, AdapterRecordSchema)));
      for (const a of records) if (a) out.push(a);
    }
    return out;
  }

  /**
   * The adapter `ref` names as `caller` sees it: its own, or another tenant's shared one.
   * Another tenant's private adapter is reported as missing, not as forbidden.
   */
  async resolveAdapter(caller: string, ref: string): Promise<AdapterRecord | undefined> {
    const p = parseAdapterRef(ref, caller);
    if (!p) return undefined;
    const a = await this.getAdapter(p.tenant, p.name);
    if (!a) return undefined;
    return a.tenant === caller || a.visibility === 'shared' ? a : undefined;
  }

  // Aliases

  getAlias(tenant: string, name: string): Promise<Alias | undefined> {
    return this.read(registryKeys.alias(tenant, name), AliasSchema);
  }

  putAlias(a: Omit<Alias, 'updated_at'>): Promise<Alias> {
    return this.write(registryKeys.alias(a.tenant, a.name), AliasSchema, { ...a, updated_at: this.now().toISOString() });
  }

  // Hit counters: approximate (read-modify-write); they only steer which mixes get merged ahead of time.

  async countHit(recipe: string): Promise<HitCounter> {
    const at = this.now().toISOString();
    const h = await this.read(registryKeys.hits(recipe), HitCounterSchema);
    const next: HitCounter = h ? { ...h, count: h.count + 1, last_at: at } : { recipe, count: 1, first_at: at, last_at: at };
    return this.write(registryKeys.hits(recipe), HitCounterSchema, next);
  }

  getHits(recipe: string): Promise<HitCounter | undefined> {
    return this.read(registryKeys.hits(recipe), HitCounterSchema);
  }

  // Hub watches

  putWatch(w: Watch): Promise<Watch> {
    return this.write(registryKeys.watch(w.repo, w.tenant, w.name), WatchSchema, w);
  }

  async deleteWatch(repo: string, tenant: string, name: string): Promise<void> {
    await this.kv.delete(registryKeys.watch(repo, tenant, name));
  }

  async watchersOf(repo: string): Promise<Watch[]> {
    const out: Watch[] = [];
    for (const k of await listAllKeys(this.kv, registryKeys.watches(repo))) {
      const w = await this.read(k, WatchSchema);
      if (w) out.push(w);
    }
    return out;
  }
}
