import { parseArgs } from 'node:util';
import { DEQUANTIZE_HELP, dequantize } from './commands/dequantize.ts';
import { FUSE_HELP, fuse } from './commands/fuse.ts';
import { GENERATE_HELP } from './commands/generate-help.ts';
import { formatReport, INSPECT_HELP, inspect } from './commands/inspect.ts';
import { MERGE_HELP, merge } from './commands/merge.ts';
import { QUANTIZE_HELP, quantize } from './commands/quantize.ts';
import { describeFailure, EXIT_BAD_INPUT, EXIT_OK, UsageError } from './errors.ts';

const MAIN_HELP = `Usage: lora-edge <command> [options]

Commands:
  inspect <path>    what a model folder, adapter folder or .safetensors file holds, and its problems
  fuse              fuse weighted LoRA adapters into a base model folder (optionally then NF4)
  merge             combine adapters into one PEFT adapter (every add_weighted_adapter type)
  quantize <path>   NF4-quantize a model folder or a .safetensors file (bitsandbytes layout)
  dequantize <path> turn NF4 tensors back into their dtype
  generate          generate tokens with the runner engine (adapters merged or unmerged)

Run 'lora-edge <command> --help' for a command's options.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.`;

interface Command {
  help: string;
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'];
  run(values: Record<string, unknown>, positionals: string[]): Promise<void> | void;
}

const commands: Record<string, Command> = {
  inspect: {
    help: INSPECT_HELP,
    options: { json: { type: 'boolean' }, model: { type: 'string' } },
    run(values, positionals) {
      if (positionals.length !== 1) throw new UsageError('inspect takes exactly one <path>');
      const report = inspect(positionals[0] as string, { model: values.model as string | undefined });
      console.log(values.json ? JSON.stringify(report) : formatReport(report));
      if (report.problems.length > 0) process.exitCode = EXIT_BAD_INPUT;
    },
  },
  fuse: {
    help: FUSE_HELP,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string', multiple: true },
      out: { type: 'string' },
      dtype: { type: 'string' },
      force: { type: 'boolean' },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
      nf4: { type: 'boolean' },
      'double-quant': { type: 'boolean' },
      blocksize: { type: 'string' },
    },
    async run(values, positionals) {
      if (positionals.length) throw new UsageError(`fuse takes no positional arguments (got ${positionals.join(' ')})`);
      if (!values.nf4 && (values['double-quant'] || values.blocksize)) throw new UsageError('--double-quant and --blocksize go with --nf4');
      const r = await fuse({
        model: values.model as string,
        adapters: (values.adapter as string[] | undefined) ?? [],
        out: values.out as string,
        dtype: values.dtype as string | undefined,
        force: values.force as boolean | undefined,
        quiet: values.quiet as boolean | undefined,
        nf4: values.nf4 as boolean | undefined,
        doubleQuant: values['double-quant'] as boolean | undefined,
        blocksize: values.blocksize as string | undefined,
      });
      const summary = { out: r.out, fused: r.fusedTensors.length, copied: r.copiedTensors };
      console.log(
        values.json ? JSON.stringify(summary) : `wrote ${r.out}: ${summary.fused} tensors fused, ${summary.copied} copied unchanged`,
      );
    },
  },
  merge: {
    help: MERGE_HELP,
    options: {
      adapter: { type: 'string', multiple: true },
      method: { type: 'string' },
      density: { type: 'string' },
      'svd-rank': { type: 'string' },
      'svd-clamp': { type: 'string' },
      'majority-sign': { type: 'string' },
      seed: { type: 'string' },
      exact: { type: 'boolean' },
      rank: { type: 'string' },
      'replay-masks': { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    async run(values, positionals) {
      if (positionals.length) throw new UsageError(`merge takes no positional arguments (got ${positionals.join(' ')})`);
      const r = await merge({
        adapters: (values.adapter as string[] | undefined) ?? [],
        method: values.method as string | undefined,
        density: values.density as string | undefined,
        svdRank: values['svd-rank'] as string | undefined,
        svdClamp: values['svd-clamp'] as string | undefined,
        majoritySign: values['majority-sign'] as string | undefined,
        seed: values.seed as string | undefined,
        exact: values.exact as boolean | undefined,
        rank: values.rank as string | undefined,
        replayMasks: values['replay-masks'] as string | undefined,
        out: values.out as string,
        force: values.force as boolean | undefined,
        quiet: values.quiet as boolean | undefined,
      });
      for (const w of r.warnings) console.error(`warning: ${w}`);
      console.log(values.json ? JSON.stringify(r) : `wrote ${r.out}: ${r.modules} modules merged, r = lora_alpha = ${r.rank}`);
    },
  },
  quantize: {
    help: QUANTIZE_HELP,
    options: {
      out: { type: 'string' },
      'double-quant': { type: 'boolean' },
      blocksize: { type: 'string' },
      tensors: { type: 'string' },
      force: { type: 'boolean' },
      quiet: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    async run(values, positionals) {
      if (positionals.length !== 1) throw new UsageError('quantize takes exactly one <model-dir | file.safetensors>');
      const r = await quantize({
        input: positionals[0] as string,
        out: values.out as string,
        doubleQuant: values['double-quant'] as boolean | undefined,
        blocksize: values.blocksize as string | undefined,
        tensors: values.tensors as string | undefined,
        force: values.force as boolean | undefined,
        quiet: values.quiet as boolean | undefined,
      });
      console.log(values.json ? JSON.stringify(r) : `wrote ${r.out}: ${r.quantized.length} tensors in NF4`);
    },
  },
  dequantize: {
    help: DEQUANTIZE_HELP,
    options: { out: { type: 'string' }, force: { type: 'boolean' }, quiet: { type: 'boolean' }, json: { type: 'boolean' } },
    async run(values, positionals) {
      if (positionals.length !== 1) throw new UsageError('dequantize takes exactly one <model-dir | file.safetensors>');
      const r = await dequantize({
        input: positionals[0] as string,
        out: values.out as string,
        force: values.force as boolean | undefined,
        quiet: values.quiet as boolean | undefined,
      });
      console.log(values.json ? JSON.stringify(r) : `wrote ${r.out}: ${r.tensors} tensors dequantized`);
    },
  },
  generate: {
    help: GENERATE_HELP,
    options: {
      model: { type: 'string' },
      adapter: { type: 'string', multiple: true },
      'prompt-ids': { type: 'string' },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      merged: { type: 'boolean' },
      unmerged: { type: 'boolean' },
      'ignore-eos': { type: 'boolean' },
      backend: { type: 'string' },
      json: { type: 'boolean' },
    },
    async run(values, positionals) {
      if (positionals.length) throw new UsageError(`generate takes no positional arguments (got ${positionals.join(' ')})`);
      // Loaded on demand: the engine, the native addon and the tokenizer are not needed by other commands.
      const { generate } = await import('./commands/generate.ts');
      const r = await generate({
        model: values.model as string,
        adapters: (values.adapter as string[] | undefined) ?? [],
        promptIds: values['prompt-ids'] as string | undefined,
        prompt: values.prompt as string | undefined,
        maxTokens: values['max-tokens'] as string | undefined,
        temperature: values.temperature as string | undefined,
        topK: values['top-k'] as string | undefined,
        topP: values['top-p'] as string | undefined,
        seed: values.seed as string | undefined,
        merged: values.merged as boolean | undefined,
        unmerged: values.unmerged as boolean | undefined,
        ignoreEos: values['ignore-eos'] as boolean | undefined,
        backend: values.backend as string | undefined,
      });
      if (!values.json) console.log(r.text ?? r.ids.join(' '));
      else console.log(JSON.stringify({ ids: r.ids, text: r.text, finish_reason: r.finishReason, backend: r.backend }));
    },
  },
};

/** Runs the CLI; returns the exit code (never throws). */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(MAIN_HELP);
    return name ? EXIT_OK : EXIT_BAD_INPUT;
  }
  if (name === '--version') {
    console.log('0.1.0');
    return EXIT_OK;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`lora-edge: unknown command "${name}"\n\n${MAIN_HELP}`);
    return EXIT_BAD_INPUT;
  }
  try {
    let parsed: { values: Record<string, unknown>; positionals: string[] };
    try {
      parsed = parseArgs({
        args: rest,
        options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
        allowPositionals: true,
        strict: true,
      });
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    if (parsed.values.help) {
      console.log(cmd.help);
      return EXIT_OK;
    }
    process.exitCode = EXIT_OK;
    await cmd.run(parsed.values, parsed.positionals);
    return (process.exitCode as number | undefined) ?? EXIT_OK;
  } catch (e) {
    const f = describeFailure(e);
    console.error(`lora-edge ${name}: ${f.message}`);
    return f.code;
  }
}
