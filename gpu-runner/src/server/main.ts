/**
 * The GPU runner service: `npm run runner -w gpu-runner` (settings: see config.ts). Prints
 * `lora-edge runner ready: <url>` once listening; SIGTERM/SIGINT drain gracefully, then exit 0.
 */
import { ConfigError, loadConfig } from './config.ts';
import { startRunner } from './runner.ts';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exit(2);
  }
  const runner = await startRunner(config);
  process.stdout.write(`lora-edge runner ready: ${runner.url}\n`);
  let stopping = false;
  const stop = (signal: string) => {
    // A second signal while draining stops at once.
    if (stopping) process.exit(1);
    stopping = true;
    runner.log.log('info', 'signal received', { signal });
    runner.shutdown().then(
      () => process.exit(0),
      (e) => {
        runner.log.log('error', 'shutdown failed', { error: e });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e) => {
  process.stderr.write(`lora-edge runner failed to start: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
