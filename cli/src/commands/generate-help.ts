/** Kept apart from generate.ts so --help does not load the engine. */
export const GENERATE_HELP = `Usage: lora-edge generate --model <dir> [--adapter <dir>[:weight] ...] (--prompt-ids 1,2,3 | --prompt "text") [options]

Generates tokens with the runner engine (native CPU kernels when built, else the TypeScript
backend). Stops at the model's EOS unless --ignore-eos (then exactly --max-tokens tokens).

Options:
  --model <dir>          Hugging Face model folder (f32/f16/bf16 safetensors, or lora-edge's NF4 output)
  --adapter <dir>[:w]    PEFT adapter; repeat for a weighted mix (weight after the last colon, may be negative)
  --prompt-ids <ids>     comma-separated token ids
  --prompt <text>        text, encoded with the tokenizer.json beside the model
  --max-tokens <n>       tokens to generate (default 32)
  --temperature <t>      0 (default) = greedy
  --top-k <k>            sample among the k most likely tokens
  --top-p <p>            nucleus sampling threshold
  --seed <s>             random seed (default 0)
  --merged | --unmerged  run adapters fused into the weights, or as LoRA kernels (default)
  --ignore-eos           do not stop at EOS
  --backend <name>       cpu-native | js | auto (default auto)
  --json                 print {"ids": [...], "text": ...} as the last stdout line`;
