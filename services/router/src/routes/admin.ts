/**
 * PUT /admin/tokenizers/:model (Authorization: Bearer <ADMIN_TOKEN>): a base model's tokenizer,
 * as multipart parts `tokenizer.json` and optional `tokenizer_config.json` (chat template, special
 * tokens), stored beside its weights under `models/<digest>/`. Checked by loading it before
 * anything is written. Every other /admin/* path belongs to the merge service.
 */
import { Hono } from 'hono';
import { type AppEnv, registry, requireAdmin } from '../http/auth.ts';
import { ApiError, invalid, modelNotFound } from '../http/errors.ts';
import { modelKey } from '../lib.ts';
import { makeTextModel, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE } from '../tokenizer.ts';

const MAX_TOKENIZER_BYTES = 32 * 1024 * 1024;

async function part(form: FormData, name: string): Promise<string | undefined> {
  const v = form.get(name);
  if (v === null) return undefined;
  return typeof v === 'string' ? v : await (v as unknown as Blob).text();
}

function parse(text: string, name: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {}
  throw invalid(name, `${name} is not a JSON object.`, 'invalid_json');
}

export const adminRoutes = new Hono<AppEnv>();
adminRoutes.use('/tokenizers/*', requireAdmin);

adminRoutes.put('/tokenizers/:model{.+}', async (c) => {
  const id = c.req.param('model');
  const model = await registry(c.env).getModel(id);
  if (!model) throw modelNotFound(id);
  if (Number(c.req.header('content-length') ?? 0) > MAX_TOKENIZER_BYTES)
    throw new ApiError(413, 'payload_too_large', `The tokenizer files are over ${MAX_TOKENIZER_BYTES} bytes.`);
  let form: FormData;
  try {
    form = await c.req.formData();
  } catch {
    throw invalid(null, 'Send multipart/form-data with a tokenizer.json part.', 'invalid_multipart');
  }
  const tokenizerText = await part(form, TOKENIZER_FILE);
  if (!tokenizerText) throw invalid(TOKENIZER_FILE, `The ${TOKENIZER_FILE} part is missing.`, 'upload_incomplete');
  const configText = await part(form, TOKENIZER_CONFIG_FILE);
  const tokenizer = parse(tokenizerText, TOKENIZER_FILE);
  const config = configText === undefined ? {} : parse(configText, TOKENIZER_CONFIG_FILE);
  let chatTemplate: boolean;
  try {
    const t = makeTextModel(tokenizer, config);
    t.decode(t.encode('hello', true));
    chatTemplate = t.chatTemplate;
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw invalid(TOKENIZER_FILE, `The tokenizer does not load: ${e instanceof Error ? e.message : String(e)}`, 'tokenizer_invalid');
  }
  if (configText !== undefined) await c.env.BLOBS.put(modelKey(model.digest, TOKENIZER_CONFIG_FILE), configText);
  // tokenizer.json last: its presence is what makes the model take text.
  await c.env.BLOBS.put(modelKey(model.digest, TOKENIZER_FILE), tokenizerText);
  return c.json({ model: model.id, digest: model.digest, chat_template: chatTemplate }, 201);
});
