import { parseArgs } from 'node:util';
import { FUSE_HELP, fuse } from './commands/fuse.ts';
import { formatReport, INSPECT_HELP, inspect } from './commands/inspect.ts';
import { describeFailure, EXIT_BAD_INPUT, EXIT_OK, UsageError } from './errors.ts';

const MAIN_HELP = `Usage: lora-edge <command> [options]

Commands:
  inspect <path>    what a model folder, adapter folder or .safetensors file holds, and its problems
  fuse              fuse weighted LoRA adapters into a base model folder

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
    },
    async run(values, positionals) {
      if (positionals.length) throw new UsageError(`fuse takes no positional arguments (got ${positionals.join(' ')})`);
      const r = await fuse({
        model: values.model as string,
        adapters: (values.adapter as string[] | undefined) ?? [],
        out: values.out as string,
        dtype: values.dtype as string | undefined,
        force: values.force as boolean | undefined,
        quiet: values.quiet as boolean | undefined,
      });
      const summary = { out: r.out, fused: r.fusedTensors.length, copied: r.copiedTensors };
      console.log(
        values.json ? JSON.stringify(summary) : `wrote ${r.out}: ${summary.fused} tensors fused, ${summary.copied} copied unchanged`,
      );
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
