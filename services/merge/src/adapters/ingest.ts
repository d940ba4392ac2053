/**
 * Registering an adapter: validate → store the files content-addressed in R2 → write the
 * registry record. The record is written last and is the only thing readers look up, so a
 * failure at any step leaves no half-registered adapter; objects this call created are removed
 * again when the record cannot be written.
 */
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@lora-edge/shared';
import { ApiError } from '../http/errors.ts';
import {
  type AdapterRecord,
  type AdapterSource,
  adapterId,
  adapterKey,
  type BaseModelRecord,
  filesDigest,
  type ObjectStore,
  type Registry,
  type Visibility,
} from '../lib.ts';
import { validateAdapterFiles } from './validate.ts';

export interface AdapterUpload {
  tenant: string;
  name: string;
  /** Registry id of the base; undefined: the config's base_model_name_or_path, if registered. */
  base?: string | undefined;
  configBytes: Uint8Array;
  weights: Uint8Array;
  visibility?: Visibility | undefined;
  examples?: string[] | undefined;
  source: AdapterSource;
  watch?: boolean | undefined;
}

export interface Registered {
  adapter: AdapterRecord;
  /** false when the same files and settings were registered already (a no-op). */
  changed: boolean;
}

/** The base an upload names, or the one its adapter_config.json names; 422 when neither is registered. */
export async function resolveBase(reg: Registry, requested: string | undefined, configBytes: Uint8Array): Promise<BaseModelRecord> {
  let id = requested;
  if (id === undefined) {
    try {
      const cfg = JSON.parse(new TextDecoder().decode(configBytes)) as { base_model_name_or_path?: unknown };
      if (typeof cfg.base_model_name_or_path === 'string') id = cfg.base_model_name_or_path;
    } catch {
      // A config that does not parse is reported by validation, with its own code.
    }
  }
  if (id === undefined) {
    throw new ApiError(400, 'base_model_required', 'name the base model (field "base"): adapter_config.json names none', { field: 'base' });
  }
  const base = await reg.getModel(id);
  if (!base) throw new ApiError(422, 'base_model_unknown', `base model "${id}" is not registered`, { field: 'base' });
  return base;
}

export async function registerAdapter(store: ObjectStore, reg: Registry, up: AdapterUpload, now: Date = new Date()): Promise<Registered> {
  const base = await resolveBase(reg, up.base, up.configBytes);
  const valid = validateAdapterFiles(up.configBytes, up.weights, base);
  const { digest, files } = await filesDigest({ [ADAPTER_CONFIG_FILE]: up.configBytes, [ADAPTER_WEIGHTS_FILE]: up.weights });

  const previous = await reg.getAdapter(up.tenant, up.name);
  const at = now.toISOString();
  const record: AdapterRecord = {
    id: adapterId(up.tenant, up.name),
    tenant: up.tenant,
    name: up.name,
    visibility: up.visibility ?? previous?.visibility ?? 'private',
    base: base.id,
    digest,
    files: {
      config: files[ADAPTER_CONFIG_FILE] as AdapterRecord['files']['config'],
      weights: files[ADAPTER_WEIGHTS_FILE] as AdapterRecord['files']['weights'],
    },
    ...valid.summary,
    examples: up.examples ?? previous?.examples ?? [],
    source: up.source,
    created_at: previous?.created_at ?? at,
    updated_at: at,
  };
  if (up.watch !== undefined) record.watch = up.watch;
  else if (previous?.watch !== undefined) record.watch = previous.watch;
  if (previous && sameRegistration(previous, record)) return { adapter: previous, changed: false };

  const created: string[] = [];
  try {
    for (const [file, bytes] of [
      [ADAPTER_CONFIG_FILE, up.configBytes],
      [ADAPTER_WEIGHTS_FILE, up.weights],
    ] as const) {
      const key = adapterKey(up.tenant, up.name, digest, file);
      // Content-addressed: an object already there holds these very bytes.
      if (await store.head(key)) continue;
      await store.put(key, bytes);
      created.push(key);
    }
    await reg.putAdapter(record);
  } catch (e) {
    if (created.length) await store.delete(created).catch(() => {});
    throw e;
  }
  return { adapter: record, changed: true };
}

function sameRegistration(a: AdapterRecord, b: AdapterRecord): boolean {
  return (
    a.digest === b.digest &&
    a.base === b.base &&
    a.visibility === b.visibility &&
    a.watch === b.watch &&
    JSON.stringify(a.examples) === JSON.stringify(b.examples) &&
    JSON.stringify(a.source) === JSON.stringify(b.source)
  );
}
