/** What quantizing a whole Hugging Face model means: which tensors, and the config transformers reads. */

const LINEAR_WEIGHT = /^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/;

/** The decoder's linear projections: what transformers' bitsandbytes 4-bit loading replaces (lm_head, norms and embeddings stay). */
export function isQuantizedLinear(name: string): boolean {
  return LINEAR_WEIGHT.test(name);
}

const TORCH_DTYPES: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

/** `quantization_config` for config.json, as transformers writes it for BitsAndBytesConfig(load_in_4bit=True, nf4). */
export function bnbQuantizationConfig(opts: { doubleQuant: boolean; computeDtype: string }): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: TORCH_DTYPES[opts.computeDtype] ?? opts.computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: opts.doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}
