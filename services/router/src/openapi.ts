/**
 * GET /openapi.json, generated from the zod schemas the handlers validate with (shared/src/openai),
 * including lora-edge's extensions: the `adapters` mix field, the `lora_edge` served-by object and
 * the `x-lora-edge-served-by` header.
 */
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import type { AppEnv } from './http/auth.ts';
import {
  ChatCompletionChunkSchema,
  ChatCompletionRequestSchema,
  ChatCompletionResponseSchema,
  CompletionRequestSchema,
  CompletionResponseSchema,
  ErrorObjectSchema,
  ModelListSchema,
  ModelObjectSchema,
} from './lib.ts';
import { SERVED_BY_HEADER } from './routes/common.ts';
import { VERSION } from './version.ts';

const errors = {
  400: {
    description:
      'Malformed JSON, an invalid field (`param` names it), weights that sum to zero, a text prompt for a model without tokenizer (`model_has_no_tokenizer`).',
    content: { 'application/json': { schema: ErrorObjectSchema } },
  },
  401: { description: 'Missing or wrong API key.', content: { 'application/json': { schema: ErrorObjectSchema } } },
  404: {
    description: 'Unknown model or adapter (another tenant’s private adapter is reported exactly as an unknown one).',
    content: { 'application/json': { schema: ErrorObjectSchema } },
  },
  429: {
    description: '`gpu_busy`: the GPU runners are at capacity; nothing was enqueued. Retry after the `Retry-After` seconds.',
    content: { 'application/json': { schema: ErrorObjectSchema } },
  },
  503: {
    description:
      '`gpu_unavailable`: the model runs on the GPU path and no runner is serving (`Retry-After` given); `gpu_queue_timeout`: no runner took the job in time; `gpu_path_unavailable`: this deployment has no GPU path.',
    content: { 'application/json': { schema: ErrorObjectSchema } },
  },
};

const servedByHeader = {
  [SERVED_BY_HEADER]: {
    description:
      'What served the request: `model=…; mode=merged|unmerged|base; adapters=tenant/name*weight,…; recipe=<sha256>; selection=…`.',
    schema: { type: 'string' as const },
  },
};

const security = [{ bearer: [] }];

export function documentRoutes(app: OpenAPIHono<AppEnv>): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key, `lek_…`.',
  });
  app.openAPIRegistry.registerPath(
    createRoute({
      method: 'post',
      path: '/v1/completions',
      summary: 'Completions (OpenAI), with vLLM’s token-id prompts and lora-edge’s adapter mixes',
      security,
      request: { body: { required: true, content: { 'application/json': { schema: CompletionRequestSchema } } } },
      responses: {
        200: {
          description: 'The completion; with `stream: true`, server-sent events of CompletionResponse chunks ending with `data: [DONE]`.',
          headers: servedByHeader,
          content: { 'application/json': { schema: CompletionResponseSchema }, 'text/event-stream': { schema: CompletionResponseSchema } },
        },
        ...errors,
      },
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: 'post',
      path: '/v1/chat/completions',
      summary: 'Chat completions through the model’s chat template (models with a tokenizer)',
      security,
      request: { body: { required: true, content: { 'application/json': { schema: ChatCompletionRequestSchema } } } },
      responses: {
        200: {
          description: 'The reply; with `stream: true`, server-sent events of ChatCompletionChunk ending with `data: [DONE]`.',
          headers: servedByHeader,
          content: {
            'application/json': { schema: ChatCompletionResponseSchema },
            'text/event-stream': { schema: ChatCompletionChunkSchema },
          },
        },
        ...errors,
      },
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: 'get',
      path: '/v1/models',
      summary: 'Base models, the adapters you may use (`parent` = base) and your aliases',
      security,
      responses: { 200: { description: 'The list.', content: { 'application/json': { schema: ModelListSchema } } }, 401: errors[401] },
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: 'get',
      path: '/v1/models/{model}',
      summary: 'One model, adapter or alias',
      security,
      request: { params: z.object({ model: z.string() }) },
      responses: {
        200: { description: 'The model.', content: { 'application/json': { schema: ModelObjectSchema } } },
        401: errors[401],
        404: errors[404],
      },
    }),
  );
}

export const OPENAPI_INFO = {
  openapi: '3.1.0',
  info: {
    title: 'lora-edge',
    version: VERSION,
    description:
      'OpenAI-compatible API serving LoRA adapters and weighted adapter mixes. Adapter uploads, merges, jobs and artifacts are the merge service’s API, served under the same host.',
  },
};
