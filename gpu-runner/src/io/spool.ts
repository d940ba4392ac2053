import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { LoraEdgeError, planSafetensors, type Tensor, type TensorSpec, type WriteOptions } from '@lora-edge/shared';

/**
 * Writes a safetensors file whose tensors' sizes are known only once computed (NF4 quant
 * states carry a float repr in their JSON): tensors go to a spool file as they are produced,
 * then the header and the spooled bytes are written out. One compute pass, memory for one
 * tensor at a time.
 */
export class SpoolWriter {
  private readonly specs: TensorSpec[] = [];
  private readonly spoolPath: string;
  private readonly fd: number;
  private bytes = 0;

  constructor(readonly path: string) {
    this.spoolPath = `${path}.spool`;
    this.fd = openSync(this.spoolPath, 'w');
  }

  get size(): number {
    return this.bytes;
  }

  add(name: string, t: Tensor): void {
    writeSync(this.fd, t.data);
    this.bytes += t.data.byteLength;
    this.specs.push({ name, dtype: t.dtype, shape: t.shape });
  }

  names(): string[] {
    return this.specs.map((s) => s.name);
  }

  finish(opts: WriteOptions = {}): void {
    closeSync(this.fd);
    const plan = planSafetensors(this.specs, opts);
    if (plan.totalSize - plan.head.byteLength !== this.bytes)
      throw new LoraEdgeError('invalid_argument', 'spooled bytes do not match the tensor shapes');
    const out = openSync(this.path, 'w');
    const spool = openSync(this.spoolPath, 'r');
    try {
      writeSync(out, plan.head);
      const buf = new Uint8Array(16 * 2 ** 20);
      for (let n = readSync(spool, buf); n > 0; n = readSync(spool, buf)) writeSync(out, buf.subarray(0, n));
    } finally {
      closeSync(out);
      closeSync(spool);
      rmSync(this.spoolPath, { force: true });
    }
  }

  abort(): void {
    try {
      closeSync(this.fd);
    } catch {}
    rmSync(this.spoolPath, { force: true });
  }
}
