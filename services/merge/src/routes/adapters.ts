/**
 * Adapter registration.
 *
 * PUT /v1/adapters/:name — one multipart/form-data request: file parts `adapter_config.json`
 * and `adapter_model.safetensors` (as PEFT's save_pretrained names them), optional text parts
 * `base` (registry id; default: the config's base_model_name_or_path), `visibility`
 * (private | shared) and `examples` (a JSON array of prompts). One request, so an upload is
 * validated and stored as a whole: there is never a config waiting for its weights.
 *
 * POST /v1/adapters — {url, name?, revision?, base?, visibility?, examples?, watch?}: the
 * files fetched by HTTPS GET (Hub repo URLs resolve to /resolve/<revision>/<file>).
 */
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '@lora-edge/shared';
import { Hono } from 'hono';
import { z } from 'zod';
import { fetchAdapterFiles, resolveSourceUrl } from '../adapters/fetch.ts';
import { registerAdapter } from '../adapters/ingest.ts';
import { type AppEnv, registry } from '../http/auth.ts';
import { parseJsonBody, parseMultipart, partBytes, partText, readCapped, validate } from '../http/body.ts';
import { ApiError } from '../http/errors.ts';
import { limits } from '../http/limits.ts';
import { ExamplesSchema, ModelIdSchema, NameSchema, TenantIdSchema, VISIBILITIES } from '../lib.ts';

/** Room for the multipart framing and text fields around the two files. */
const MULTIPART_SLACK = 64 * 1024;

const UploadFieldsSchema = z.object({
  base: ModelIdSchema.optional(),
  visibility: z.enum(VISIBILITIES).optional(),
  examples: ExamplesSchema.optional(),
});

const ByUrlSchema = z.strictObject({
  url: z.string().min(1).max(2000),
  name: NameSchema.optional(),
  revision: z.string().min(1).max(200).optional(),
  base: ModelIdSchema.optional(),
  visibility: z.enum(VISIBILITIES).optional(),
  examples: ExamplesSchema.optional(),
  watch: z.boolean().optional(),
});

function parseExamples(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, 'invalid_request', 'examples: a JSON array of strings', { field: 'examples' });
  }
}

/** Mounted under /v1/adapters, behind requireTenant. */
export const adapterRoutes = new Hono<AppEnv>();

adapterRoutes.put('/:name', async (c) => {
  const tenant = c.get('tenant');
  const name = validate(NameSchema, c.req.param('name'), 'name');
  const max = limits(c.env).maxAdapterBytes;
  const body = await readCapped(c.req.raw, max + MULTIPART_SLACK, 'adapter_too_large');
  const form = await parseMultipart(body, c.req.header('content-type'));
  const configBytes = await partBytes(form, ADAPTER_CONFIG_FILE);
  const weights = await partBytes(form, ADAPTER_WEIGHTS_FILE);
  if (!configBytes || !weights) {
    const missing = [!configBytes && ADAPTER_CONFIG_FILE, !weights && ADAPTER_WEIGHTS_FILE].filter(Boolean).join(' and ');
    throw new ApiError(400, 'upload_incomplete', `the upload lacks ${missing}: send both PEFT files as multipart parts`, {
      field: missing,
    });
  }
  if (configBytes.byteLength + weights.byteLength > max) {
    throw new ApiError(413, 'adapter_too_large', `the adapter files exceed ${max} bytes`, { limit_bytes: max });
  }
  const fields = validate(UploadFieldsSchema, {
    base: partText(form, 'base'),
    visibility: partText(form, 'visibility'),
    examples: parseExamples(partText(form, 'examples')),
  });
  const { adapter, changed } = await registerAdapter(c.env.BLOBS, registry(c.env), {
    tenant: tenant.id,
    name,
    base: fields.base,
    configBytes,
    weights,
    visibility: fields.visibility,
    examples: fields.examples,
    source: { kind: 'upload' },
  });
  return c.json({ adapter }, changed ? 201 : 200);
});

adapterRoutes.post('/', async (c) => {
  const tenant = c.get('tenant');
  const req = parseJsonBody(await readCapped(c.req.raw, 64 * 1024), ByUrlSchema);
  const lim = limits(c.env);
  const src = resolveSourceUrl(req.url, lim.fetchAllowedHosts, req.revision);
  const name = req.name ?? src.suggestedName;
  if (!NameSchema.safeParse(name).success)
    throw new ApiError(400, 'invalid_request', `"${name}" is not a valid adapter name: give one`, { field: 'name' });
  if (req.watch && src.source.kind !== 'hf')
    throw new ApiError(400, 'invalid_request', 'watch needs a Hugging Face Hub URL', { field: 'watch' });
  const { configBytes, weights } = await fetchAdapterFiles(src.dir, lim.maxAdapterBytes, c.env.HF_TOKEN);
  const reg = registry(c.env);
  const { adapter, changed } = await registerAdapter(c.env.BLOBS, reg, {
    tenant: tenant.id,
    name,
    base: req.base,
    configBytes,
    weights,
    visibility: req.visibility,
    examples: req.examples,
    source: src.source,
    watch: req.watch,
  });
  if (req.watch && src.source.kind === 'hf') {
    const w = { repo: src.source.repo, tenant: tenant.id, name };
    await reg.putWatch(src.source.subfolder ? { ...w, subfolder: src.source.subfolder } : w);
  }
  return c.json({ adapter }, changed ? 201 : 200);
});

adapterRoutes.get('/', async (c) => c.json({ adapters: await registry(c.env).listAdapters(c.get('tenant').id) }));

const notFound = (ref: string) => new ApiError(404, 'adapter_not_found', `no adapter "${ref}" visible to you`);

adapterRoutes.get('/:name', async (c) => {
  const name = validate(NameSchema, c.req.param('name'), 'name');
  const a = await registry(c.env).getAdapter(c.get('tenant').id, name);
  if (!a) throw notFound(name);
  return c.json({ adapter: a });
});

adapterRoutes.get('/:owner/:name', async (c) => {
  const owner = validate(TenantIdSchema, c.req.param('owner'), 'owner');
  const name = validate(NameSchema, c.req.param('name'), 'name');
  const a = await registry(c.env).resolveAdapter(c.get('tenant').id, `${owner}/${name}`);
  if (!a) throw notFound(`${owner}/${name}`);
  return c.json({ adapter: a });
});
