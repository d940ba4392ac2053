/**
 * Text in and out, for base models that have a tokenizer: `models/<digest>/tokenizer.json` (the
 * Hugging Face tokenizers format, run by @huggingface/tokenizers) and `tokenizer_config.json`
 * (special tokens and the Jinja chat template, rendered by @huggingface/jinja). Models without
 * them (stories260k) take token ids only. Parsed once per isolate and model.
 */
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ApiError } from './http/errors.ts';
import { type ChatMessage, modelKey } from './lib.ts';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

export interface TextModel {
  /** Completions add the tokenizer's special tokens (as vLLM does); rendered chat templates carry their own. */
  encode(text: string, addSpecialTokens: boolean): number[];
  decode(ids: readonly number[]): string;
  readonly chatTemplate: boolean;
  renderChat(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
}

type TokenizerConfig = Record<string, unknown> & { chat_template?: unknown };

/** `"<s>"` or `{"content": "<s>", …}` (both appear in tokenizer_config.json files). */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

function templateSource(config: TokenizerConfig): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  // Several named templates: the one called "default", as transformers picks.
  if (Array.isArray(t)) {
    const named = t as { name?: unknown; template?: unknown }[];
    const d = named.find((x) => x.name === 'default') ?? named[0];
    return typeof d?.template === 'string' ? d.template : undefined;
  }
  return undefined;
}

function contentText(m: ChatMessage): string {
  if (typeof m.content === 'string') return m.content;
  return (m.content ?? []).map((p) => p.text).join('');
}

export function makeTextModel(tokenizerJson: unknown, config: TokenizerConfig): TextModel {
  const tokenizer = new Tokenizer(tokenizerJson as object, config);
  const source = templateSource(config);
  const template = source === undefined ? undefined : new Template(source);
  const specials: Record<string, string> = {};
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token']) {
    const v = tokenText(config[k]);
    if (v !== undefined) specials[k] = v;
  }
  return {
    encode: (text, addSpecialTokens) => tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids,
    decode: (ids) => tokenizer.decode([...ids], { skip_special_tokens: true }),
    chatTemplate: template !== undefined,
    renderChat(messages, addGenerationPrompt) {
      if (!template)
        throw new ApiError(
          400,
          'model_has_no_chat_template',
          'This model has a tokenizer but no chat template: use /v1/completions.',
          'model',
        );
      try {
        return template.render({
          ...specials,
          messages: messages.map((m) => ({ role: m.role, content: contentText(m), ...(m.name ? { name: m.name } : {}) })),
          add_generation_prompt: addGenerationPrompt,
        });
      } catch (e) {
        // Templates raise on conversations they do not support (e.g. roles out of order).
        throw new ApiError(
          400,
          'chat_template_error',
          `The model's chat template refused these messages: ${e instanceof Error ? e.message : String(e)}`,
          'messages',
        );
      }
    },
  };
}

/** Per-isolate cache by model digest; misses are not cached (a tokenizer may be added later). */
const cache = new Map<string, Promise<TextModel | undefined>>();
const MAX_CACHED = 4;

export function loadTextModel(bucket: R2Bucket, digest: string): Promise<TextModel | undefined> {
  let p = cache.get(digest);
  if (!p) {
    p = (async () => {
      const obj = await bucket.get(modelKey(digest, TOKENIZER_FILE));
      if (!obj) return undefined;
      const cfg = await bucket.get(modelKey(digest, TOKENIZER_CONFIG_FILE));
      const config = cfg ? ((await cfg.json()) as TokenizerConfig) : {};
      return makeTextModel(await obj.json(), config);
    })();
    cache.set(digest, p);
    while (cache.size > MAX_CACHED) cache.delete(cache.keys().next().value as string);
    p.then(
      (m) => m === undefined && cache.delete(digest),
      () => cache.delete(digest),
    );
  }
  return p;
}

export function noTokenizer(param: string): ApiError {
  return new ApiError(
    400,
    'model_has_no_tokenizer',
    'This model has no tokenizer: send the prompt as token ids (e.g. "prompt": [1, 2, 3]).',
    param,
  );
}
