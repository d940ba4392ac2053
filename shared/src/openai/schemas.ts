/**
 * The public API's shapes: OpenAI's completions, chat completions and models, with vLLM's
 * extensions where OpenAI has no field (token-id prompts, `return_token_ids`, `ignore_eos`,
 * `top_k`, `stop_token_ids`) and lora-edge's own (`adapters`, `lora_edge`). Plain zod with
 * `.meta()`: the router validates with these and generates its OpenAPI document from them.
 *
 * Requests are loose objects: fields we do not know are dropped, as OpenAI-compatible servers
 * do, so clients that send newer fields keep working; fields we know but cannot honour are
 * refused by the router with a 400 naming them.
 */
import { z } from 'zod';

const TokenId = z.number().int().nonnegative();

export const PromptSchema = z
  .union([z.string(), z.array(z.string()).min(1), z.array(TokenId).min(1), z.array(z.array(TokenId).min(1)).min(1)], {
    error: 'prompt must be a string, an array of strings, an array of token ids or an array of arrays of token ids',
  })
  .meta({
    description: 'Text, several texts, token ids (vLLM) or several token-id arrays. Each prompt gives its own choice(s).',
    example: [1, 403, 411],
  });

export const StopSchema = z
  .union([z.string(), z.array(z.string()).max(4)], { error: 'stop must be a string or an array of up to 4 strings' })
  .nullable()
  .optional()
  .meta({ description: 'Up to 4 strings that end the generation (not included). Needs a model with a tokenizer.' });

export const AdapterMixEntrySchema = z
  .object({
    id: z.string().min(1).max(200).meta({ description: 'An adapter: `name` (yours) or `tenant/name` (shared with you).' }),
    weight: z.number().default(1).meta({ description: 'Its weight in the mix (negative allowed); the weights may not sum to zero.' }),
  })
  .meta({ id: 'AdapterMixEntry' });
export type AdapterMixEntry = z.infer<typeof AdapterMixEntrySchema>;

export const AdapterMixSchema = z
  .array(AdapterMixEntrySchema)
  .max(16)
  .optional()
  .meta({
    description:
      'lora-edge extension: the adapter mix to serve the request with, `[{id, weight}]`. `[]` serves the base model alone. ' +
      'Only with a base model in `model` (not `base:adapter` or an alias).',
    example: [
      { id: 'tiny-qv-r4', weight: 0.5 },
      { id: 'tiny-all-r8', weight: 0.3 },
    ],
  });

const StreamOptionsSchema = z
  .object({ include_usage: z.boolean().optional().meta({ description: 'Send a last chunk with `usage` and no choices.' }) })
  .nullable()
  .optional();

/** Sampling and the extensions shared by both endpoints. */
const samplingFields = {
  temperature: z.number().min(0).max(2).nullable().optional().meta({ description: '0 is greedy. Default 1.' }),
  top_p: z.number().gt(0).lte(1).nullable().optional(),
  top_k: z
    .number()
    .int()
    .min(-1)
    .nullable()
    .optional()
    .meta({ description: 'vLLM extension: keep the k most likely tokens; -1 or 0 keeps all.' }),
  seed: z.number().int().nullable().optional().meta({ description: 'The same seed gives the same tokens.' }),
  n: z.number().int().min(1).max(8).nullable().optional().meta({ description: 'Choices per prompt.' }),
  stream: z.boolean().nullable().optional(),
  stream_options: StreamOptionsSchema,
  stop: StopSchema,
  stop_token_ids: z
    .array(TokenId)
    .max(64)
    .nullable()
    .optional()
    .meta({ description: 'vLLM extension: token ids that end the generation.' }),
  ignore_eos: z.boolean().nullable().optional().meta({ description: 'vLLM extension: generate exactly max_tokens, past the EOS token.' }),
  return_token_ids: z.boolean().nullable().optional().meta({
    description: 'vLLM extension: `choices[].token_ids` (generated ids; in a stream each chunk’s new ids) and `prompt_token_ids`.',
  }),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  logit_bias: z.record(z.string(), z.number()).nullable().optional(),
  user: z
    .string()
    .max(256)
    .optional()
    .meta({ description: 'A stable end-user id: also keeps that user on one side of an alias’s canary split.' }),
  adapters: AdapterMixSchema,
};

export const CompletionRequestSchema = z
  .object({
    model: z
      .string()
      .min(1)
      .meta({ description: 'A base model, `base:adapter`, an adapter, or an alias.', example: 'stories260k:tiny-qv-r4' }),
    prompt: PromptSchema,
    max_tokens: z.number().int().min(1).nullable().optional().meta({ description: 'Default 16.' }),
    echo: z.boolean().nullable().optional(),
    logprobs: z.number().int().nullable().optional(),
    best_of: z.number().int().nullable().optional(),
    suffix: z.string().nullable().optional(),
    ...samplingFields,
  })
  .meta({ id: 'CompletionRequest' });
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

const TextPartSchema = z.object({ type: z.literal('text'), text: z.string() });

export const ChatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
    content: z
      .union([z.string(), z.array(TextPartSchema)], { error: 'content must be a string or an array of text parts' })
      .nullable()
      .optional(),
    name: z.string().optional(),
  })
  .meta({ id: 'ChatMessage' });
export type ChatMessage = z.infer<typeof ChatMessageSchema>;

export const ChatCompletionRequestSchema = z
  .object({
    model: z.string().min(1).meta({ description: 'A base model with a tokenizer, `base:adapter`, an adapter, or an alias.' }),
    messages: z.array(ChatMessageSchema).min(1),
    max_tokens: z.number().int().min(1).nullable().optional(),
    max_completion_tokens: z.number().int().min(1).nullable().optional(),
    logprobs: z.boolean().nullable().optional(),
    add_generation_prompt: z
      .boolean()
      .optional()
      .meta({ description: 'vLLM extension: end the prompt with the assistant turn’s opening. Default true.' }),
    // Known and not honoured yet: refused by name when they ask for something (tools, structured output).
    tools: z.array(z.unknown()).nullable().optional().meta({ description: 'Not supported: a non-empty list is refused.' }),
    tool_choice: z.unknown().optional().meta({ description: 'Not supported beyond "none".' }),
    functions: z.array(z.unknown()).nullable().optional().meta({ description: 'Not supported: a non-empty list is refused.' }),
    function_call: z.unknown().optional().meta({ description: 'Not supported beyond "none".' }),
    response_format: z
      .object({ type: z.string() })
      .loose()
      .nullable()
      .optional()
      .meta({ description: 'Only `{"type": "text"}`; JSON modes are refused.' }),
    ...samplingFields,
  })
  .meta({ id: 'ChatCompletionRequest' });
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

// Responses (documented; the router builds them by hand).

export const ServeModes = ['base', 'merged', 'unmerged'] as const;
export type ServeMode = (typeof ServeModes)[number];
export const SelectionSources = ['explicit', 'model', 'alias', 'default', 'retrieval', 'none'] as const;
export type SelectionSource = (typeof SelectionSources)[number];

export const ServedBySchema = z
  .object({
    model: z.string().meta({ description: 'The base model.' }),
    adapters: z
      .array(z.object({ id: z.string(), weight: z.number() }))
      .meta({ description: 'The mix that served the request (`tenant/name`).' }),
    mode: z.enum(ServeModes).meta({
      description: '`merged`: a cached merged artifact of this mix; `unmerged`: the adapters applied at run time; `base`: no adapter.',
    }),
    recipe: z.string().nullable().meta({ description: 'The mix’s recipe key (SHA-256): `artifacts/<recipe>/` once merged.' }),
    selection: z.enum(SelectionSources).meta({
      description:
        'How the mix was chosen: the `adapters` field, the `model` name, an alias route, the tenant’s default, retrieval by prompt similarity, or none.',
    }),
    alias: z.string().optional(),
    target: z.enum(['edge', 'gpu']),
  })
  .meta({
    id: 'LoraEdgeServedBy',
    description: 'lora-edge extension: what served the request. The same facts are in the `x-lora-edge-served-by` header.',
  });
export type ServedBy = z.infer<typeof ServedBySchema>;

export const UsageSchema = z
  .object({ prompt_tokens: z.number().int(), completion_tokens: z.number().int(), total_tokens: z.number().int() })
  .meta({ id: 'Usage' });
export type Usage = z.infer<typeof UsageSchema>;

const FinishReason = z.enum(['stop', 'length']).nullable();

export const CompletionChoiceSchema = z.object({
  index: z.number().int(),
  text: z.string(),
  finish_reason: FinishReason,
  logprobs: z.null(),
  token_ids: z.array(z.number().int()).optional().meta({ description: 'vLLM extension (`return_token_ids`): generated ids.' }),
  prompt_token_ids: z.array(z.number().int()).optional().meta({ description: 'vLLM extension (`return_token_ids`).' }),
});

export const CompletionResponseSchema = z
  .object({
    id: z.string(),
    object: z.literal('text_completion'),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(CompletionChoiceSchema),
    usage: UsageSchema.nullable().optional(),
    lora_edge: ServedBySchema,
  })
  .meta({
    id: 'CompletionResponse',
    description: 'In a stream: one of these per `data:` event (`usage` only in the last with include_usage), then `data: [DONE]`.',
  });
export type CompletionResponse = z.infer<typeof CompletionResponseSchema>;

export const ChatCompletionResponseSchema = z
  .object({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.number().int(),
        message: z.object({ role: z.literal('assistant'), content: z.string() }),
        finish_reason: FinishReason,
        logprobs: z.null(),
        token_ids: z.array(z.number().int()).optional(),
      }),
    ),
    usage: UsageSchema,
    prompt_token_ids: z.array(z.number().int()).optional().meta({ description: 'vLLM extension (`return_token_ids`).' }),
    lora_edge: ServedBySchema,
  })
  .meta({ id: 'ChatCompletionResponse' });
export type ChatCompletionResponse = z.infer<typeof ChatCompletionResponseSchema>;

export const ChatCompletionChunkSchema = z
  .object({
    id: z.string(),
    object: z.literal('chat.completion.chunk'),
    created: z.number().int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.number().int(),
        delta: z.object({ role: z.literal('assistant').optional(), content: z.string().optional() }),
        finish_reason: FinishReason,
        logprobs: z.null(),
        token_ids: z.array(z.number().int()).optional(),
      }),
    ),
    usage: UsageSchema.nullable().optional(),
    lora_edge: ServedBySchema.optional(),
  })
  .meta({ id: 'ChatCompletionChunk', description: 'One `data:` event of a chat stream; the stream ends with `data: [DONE]`.' });

export const ModelObjectSchema = z
  .object({
    id: z.string().meta({ description: 'What to send as `model`.' }),
    object: z.literal('model'),
    created: z.number().int(),
    owned_by: z.string(),
    root: z.string().meta({ description: 'vLLM: the base model, adapter or alias this id stands for.' }),
    parent: z.string().nullable().meta({ description: 'vLLM: the base model of an adapter (or alias); null for a base model.' }),
    max_model_len: z.number().int().optional(),
    lora_edge: z.object({
      kind: z.enum(['base', 'adapter', 'alias']),
      has_tokenizer: z.boolean().optional(),
      edge_eligible: z.boolean().optional(),
      target: z.enum(['edge', 'gpu']).optional().meta({ description: 'Where its generations run: the edge, or the GPU runners.' }),
      visibility: z.enum(['private', 'shared']).optional(),
      digest: z.string().optional(),
      routes: z
        .array(
          z.object({
            weight: z.number(),
            base: z.string().optional(),
            mix: z.array(z.object({ adapter: z.string(), weight: z.number() })),
          }),
        )
        .optional(),
    }),
  })
  .meta({ id: 'Model' });
export type ModelObject = z.infer<typeof ModelObjectSchema>;

export const ModelListSchema = z.object({ object: z.literal('list'), data: z.array(ModelObjectSchema) }).meta({ id: 'ModelList' });

export const ErrorObjectSchema = z
  .object({
    error: z.object({
      message: z.string(),
      type: z.string(),
      code: z.string().nullable(),
      param: z.string().nullable(),
    }),
  })
  .meta({ id: 'Error', description: 'As OpenAI’s: `code` is machine-readable, `param` names the offending field.' });
export type ErrorObject = z.infer<typeof ErrorObjectSchema>;
