import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  type Completion,
  Engine,
  loadAdapterDir,
  loadBackend,
  loadRunnerModel,
  type MixEntry,
  modelSource,
  nf4Decoder,
  openModelDir,
} from '@lora-edge/gpu-runner';
import { LoraEdgeError } from '@lora-edge/shared';
import { parseAdapterArg } from '../adapter-arg.ts';
import { UsageError } from '../errors.ts';

export interface GenerateOptions {
  model: string;
  adapters: string[];
  promptIds?: string;
  prompt?: string;
  maxTokens?: string;
  temperature?: string;
  topK?: string;
  topP?: string;
  seed?: string;
  merged?: boolean;
  unmerged?: boolean;
  ignoreEos?: boolean;
  backend?: string;
}

function num(value: string | undefined, flag: string, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const v = Number(value);
  if (value.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
    throw new UsageError(`${flag} ${value}: not ${integer ? 'an integer' : 'a number'}`);
  return v;
}

function loadTokenizer(dir: string): Tokenizer | undefined {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) return undefined;
  const configPath = join(dir, 'tokenizer_config.json');
  const config = existsSync(configPath) ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
  try {
    return new Tokenizer(JSON.parse(readFileSync(path, 'utf8')), config);
  } catch (e) {
    throw new LoraEdgeError('invalid_argument', `cannot load the tokenizer (${(e as Error).message})`, { file: path });
  }
}

export async function generate(opts: GenerateOptions): Promise<Completion & { text: string | null; backend: string }> {
  if (!opts.model) throw new UsageError('generate needs --model <dir>');
  if ((opts.promptIds === undefined) === (opts.prompt === undefined)) throw new UsageError('give exactly one of --prompt-ids or --prompt');
  if (opts.merged && opts.unmerged) throw new UsageError('--merged and --unmerged exclude each other');
  const dir = openModelDir(opts.model);
  try {
    const tokenizer = loadTokenizer(opts.model);
    let prompt: number[];
    if (opts.promptIds !== undefined) {
      prompt = opts.promptIds.split(',').map((s) => {
        const v = Number(s.trim());
        if (s.trim() === '' || !Number.isInteger(v)) throw new UsageError(`--prompt-ids: "${s}" is not a token id`);
        return v;
      });
    } else {
      if (!tokenizer)
        throw new LoraEdgeError('invalid_argument', `--prompt needs a tokenizer.json in ${opts.model} (or pass --prompt-ids)`);
      prompt = tokenizer.encode(opts.prompt as string).ids;
    }
    const mix: MixEntry[] = opts.adapters.map((arg) => {
      const { dir: adapterDir, weight } = parseAdapterArg(arg);
      return { id: adapterDir, adapter: loadAdapterDir(adapterDir), weight };
    });
    const backend = loadBackend((opts.backend ?? 'auto') as 'auto');
    const source = modelSource(dir);
    const engine = new Engine(backend, loadRunnerModel(backend, source, { decoders: [nf4Decoder] }), source);
    const result = await engine.generate({
      prompt,
      maxTokens: num(opts.maxTokens, '--max-tokens', true) ?? 32,
      mix,
      mode: opts.merged ? 'merged' : 'unmerged',
      ignoreEos: opts.ignoreEos ?? false,
      sampling: {
        temperature: num(opts.temperature, '--temperature'),
        topK: num(opts.topK, '--top-k', true),
        topP: num(opts.topP, '--top-p'),
        seed: num(opts.seed, '--seed', true),
      },
    });
    return { ...result, text: tokenizer ? tokenizer.decode(result.ids) : null, backend: backend.name };
  } finally {
    dir.close();
  }
}
