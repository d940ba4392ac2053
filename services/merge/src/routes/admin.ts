/**
 * Operator API (Authorization: Bearer <ADMIN_TOKEN>): tenants, their API keys, base models.
 *
 * POST /admin/tenants {id, name?} → 201 {tenant, api_key: {id, key}} (the key is shown once)
 * POST /admin/tenants/:id/keys {label?} → 201 {api_key: {id, key}}
 * PUT /admin/models/:id[?placement=auto|edge|gpu] — multipart parts `config.json` and `model.safetensors`
 * PATCH /admin/models/:id {placement} — pin a model to the GPU runners (or back to auto)
 */
import { assertWeights, isLoraEdgeError, parseModelConfig, readSafetensors } from '@lora-edge/shared';
import { Hono } from 'hono';
import { z } from 'zod';
import { decodeUtf8 } from '../adapters/validate.ts';
import { type AppEnv, registry, requireAdmin } from '../http/auth.ts';
import { parseJsonBody, parseMultipart, partBytes, readCapped, validate } from '../http/body.ts';
import { ApiError } from '../http/errors.ts';
import { limits } from '../http/limits.ts';
import {
  type BaseModelRecord,
  DEFAULT_EDGE_MODEL_BYTES,
  filesDigest,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  ModelIdSchema,
  modelKey,
  TenantIdSchema,
} from '../lib.ts';

export const adminRoutes = new Hono<AppEnv>();
adminRoutes.use('*', requireAdmin);

const NewTenantSchema = z.strictObject({ id: TenantIdSchema, name: z.string().min(1).max(200).optional() });
const NewKeySchema = z.strictObject({ label: z.string().max(200).optional() });
const PlacementSchema = z.enum(['auto', 'edge', 'gpu']);
const ModelPatchSchema = z.strictObject({ placement: PlacementSchema });

adminRoutes.post('/tenants', async (c) => {
  const req = parseJsonBody(await readCapped(c.req.raw, 16 * 1024), NewTenantSchema);
  const reg = registry(c.env);
  if (await reg.getTenant(req.id)) throw new ApiError(409, 'tenant_exists', `tenant "${req.id}" exists`, { field: 'id' });
  const tenant = await reg.putTenant({ id: req.id, name: req.name ?? req.id, created_at: new Date().toISOString() });
  const { key, record } = await reg.issueApiKey(tenant.id, 'initial');
  return c.json({ tenant, api_key: { id: record.id, key } }, 201);
});

adminRoutes.post('/tenants/:id/keys', async (c) => {
  const id = validate(TenantIdSchema, c.req.param('id'), 'id');
  const req = parseJsonBody(await readCapped(c.req.raw, 16 * 1024), NewKeySchema);
  const reg = registry(c.env);
  if (!(await reg.getTenant(id))) throw new ApiError(404, 'tenant_not_found', `no tenant "${id}"`);
  const { key, record } = await reg.issueApiKey(id, req.label);
  return c.json({ api_key: { id: record.id, key } }, 201);
});

adminRoutes.patch('/models/:id{.+}', async (c) => {
  const id = validate(ModelIdSchema, c.req.param('id'), 'id');
  const req = parseJsonBody(await readCapped(c.req.raw, 16 * 1024), ModelPatchSchema);
  const reg = registry(c.env);
  const model = await reg.getModel(id);
  if (!model) throw new ApiError(404, 'model_not_found', `no base model "${id}"`, { field: 'id' });
  return c.json({ model: await reg.putModel({ ...model, placement: req.placement }) });
});

adminRoutes.put('/models/:id{.+}', async (c) => {
  const id = validate(ModelIdSchema, c.req.param('id'), 'id');
  const placement = validate(PlacementSchema, c.req.query('placement') ?? 'auto', 'placement');
  const max = limits(c.env).maxModelBytes;
  const form = await parseMultipart(await readCapped(c.req.raw, max + 64 * 1024, 'model_too_large'), c.req.header('content-type'));
  const configBytes = await partBytes(form, MODEL_CONFIG_FILE);
  const weights = await partBytes(form, MODEL_WEIGHTS_FILE);
  if (!configBytes || !weights) throw new ApiError(400, 'upload_incomplete', `send both ${MODEL_CONFIG_FILE} and ${MODEL_WEIGHTS_FILE}`);
  const configText = decodeUtf8(configBytes, MODEL_CONFIG_FILE);
  let config: Record<string, unknown>;
  try {
    const parsed = parseModelConfig(configText, MODEL_CONFIG_FILE);
    const st = readSafetensors(weights);
    assertWeights(parsed, st.header.byName, MODEL_WEIGHTS_FILE);
    config = JSON.parse(configText) as Record<string, unknown>;
  } catch (e) {
    if (isLoraEdgeError(e)) throw e;
    throw new ApiError(400, 'model_invalid', `the model files do not parse (${e instanceof Error ? e.message : String(e)})`);
  }
  const { digest, files } = await filesDigest({ [MODEL_CONFIG_FILE]: configBytes, [MODEL_WEIGHTS_FILE]: weights });
  for (const [file, bytes] of [
    [MODEL_CONFIG_FILE, configBytes],
    [MODEL_WEIGHTS_FILE, weights],
  ] as const) {
    if (!(await c.env.BLOBS.head(modelKey(digest, file)))) await c.env.BLOBS.put(modelKey(digest, file), bytes);
  }
  const record: BaseModelRecord = {
    id,
    digest,
    config,
    files: {
      config: files[MODEL_CONFIG_FILE] as BaseModelRecord['files']['config'],
      weights: files[MODEL_WEIGHTS_FILE] as BaseModelRecord['files']['weights'],
    },
    size: weights.byteLength,
    edge_eligible: weights.byteLength <= DEFAULT_EDGE_MODEL_BYTES,
    placement,
    created_at: new Date().toISOString(),
  };
  return c.json({ model: await registry(c.env).putModel(record) }, 201);
});
