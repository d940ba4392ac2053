import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FIXTURES, readBytes } from '../../../test/fixtures.ts';
import { LoraEdgeError } from '../errors.ts';
import { DTYPES, type DType } from '../tensor/dtype.ts';
import { parseSafetensorsHeader, readHeaderLength } from './header.ts';
import { readSafetensors } from './read.ts';
import { type NamedTensor, planSafetensors, serializeSafetensors, streamSafetensors } from './write.ts';

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.safetensors') ? [p] : [];
  });
}

const fixtureFiles = walk(FIXTURES);

function rewrite(bytes: Uint8Array): Uint8Array {
  const f = readSafetensors(bytes);
  const byData = [...f.header.tensors].sort((a, b) => a.begin - b.begin);
  const tensors = byData.map((t) => ({ name: t.name, ...f.tensor(t.name) }));
  return serializeSafetensors(tensors, { metadata: f.header.metadata, headerOrder: f.names() });
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LoraEdgeError);
    expect((e as LoraEdgeError).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('safetensors round trip', () => {
  it('finds the fixture files', () => expect(fixtureFiles.length).toBeGreaterThanOrEqual(30));

  it.each(fixtureFiles.map((f) => [f.slice(FIXTURES.length + 1), f]))('%s: read -> write -> read is byte-identical', (_, path) => {
    const bytes = readBytes(path);
    const again = rewrite(bytes);
    expect(Buffer.compare(Buffer.from(again), Buffer.from(bytes))).toBe(0);
    expect(Buffer.compare(Buffer.from(rewrite(again)), Buffer.from(bytes))).toBe(0);
  });

  it('writes and reads every dtype, zero-size and scalar tensors', () => {
    const tensors: NamedTensor[] = (Object.keys(DTYPES) as DType[]).map((dtype, i) => {
      const shape = [2, 3];
      const data = new Uint8Array(6 * DTYPES[dtype]).map((_, j) => (j * 7 + i) & 0xff);
      return { name: `t.${dtype}`, dtype, shape, data };
    });
    tensors.push({ name: 'empty', dtype: 'F32', shape: [0, 5], data: new Uint8Array(0) });
    tensors.push({ name: 'scalar', dtype: 'I64', shape: [], data: new Uint8Array(8).fill(1) });
    const bytes = serializeSafetensors(tensors, { metadata: { format: 'pt', note: 'ü "quoted"' } });
    expect((8 + readHeaderLength(bytes, bytes.byteLength)) % 8).toBe(0);
    const f = readSafetensors(bytes);
    expect(f.header.metadata).toEqual({ format: 'pt', note: 'ü "quoted"' });
    for (const t of tensors) {
      const got = f.tensor(t.name);
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      expect([...got.data]).toEqual([...t.data]);
    }
  });

  it('streams the same bytes as the in-memory writer', async () => {
    const tensors: NamedTensor[] = [
      { name: 'a', dtype: 'F32', shape: [4, 4], data: new Uint8Array(64).map((_, i) => i) },
      { name: 'b', dtype: 'BF16', shape: [3], data: new Uint8Array(6).fill(9) },
    ];
    const chunks: Uint8Array[] = [];
    const stream = streamSafetensors(tensors, function* (_, i) {
      const d = (tensors[i] as NamedTensor).data;
      yield d.subarray(0, 5);
      yield d.subarray(5);
    });
    for await (const c of stream) chunks.push(c);
    expect(Buffer.concat(chunks)).toEqual(Buffer.from(serializeSafetensors(tensors)));
  });

  it('refuses a producer that yields too few bytes', async () => {
    const stream = streamSafetensors([{ name: 'a', dtype: 'F32', shape: [4] }], function* () {
      yield new Uint8Array(8);
    });
    await expect(async () => {
      for await (const _ of stream);
    }).rejects.toMatchObject({ code: 'invalid_argument', tensor: 'a' });
  });
});

function fileWithHeader(header: unknown, dataBytes: number, pad = true): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const n = pad ? Math.ceil(json.byteLength / 8) * 8 : json.byteLength;
  const out = new Uint8Array(8 + n + dataBytes).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  return out;
}

describe('safetensors bad input', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('accepts a well-formed handmade file', () => {
    expect(readSafetensors(fileWithHeader(ok, 8)).names()).toEqual(['a']);
  });
  it('truncated before the length', () => expectCode(() => readSafetensors(new Uint8Array(5)), 'safetensors_truncated'));
  it('header length past the end', () => {
    const f = fileWithHeader(ok, 8);
    new DataView(f.buffer).setBigUint64(0, 1000n, true);
    expectCode(() => readSafetensors(f), 'safetensors_truncated');
  });
  it('forged huge header length', () => {
    const f = fileWithHeader(ok, 8);
    new DataView(f.buffer).setBigUint64(0, 2n ** 62n, true);
    expectCode(() => readSafetensors(f), 'safetensors_header_too_large');
  });
  it('truncated data', () => expectCode(() => readSafetensors(fileWithHeader(ok, 8).subarray(0, -3)), 'safetensors_bad_offsets'));
  it('invalid JSON', () => expectCode(() => readSafetensors(fileWithHeader('{"a": [', 0)), 'safetensors_header_invalid'));
  it('unknown dtype', () =>
    expectCode(
      () => readSafetensors(fileWithHeader({ a: { dtype: 'F8', shape: [2], data_offsets: [0, 2] } }, 2)),
      'safetensors_unknown_dtype',
    ));
  it('shape and byte size disagree', () =>
    expectCode(
      () => readSafetensors(fileWithHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8)),
      'safetensors_bad_shape',
    ));
  it('forged shape that overflows', () =>
    expectCode(
      () => readSafetensors(fileWithHeader({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 2], data_offsets: [0, 0] } }, 0)),
      'safetensors_bad_shape',
    ));
  it('overlapping offsets', () => {
    const h = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } };
    expectCode(() => readSafetensors(fileWithHeader(h, 12)), 'safetensors_overlap');
  });
  it('out-of-range offsets', () =>
    expectCode(
      () => readSafetensors(fileWithHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 8)),
      'safetensors_bad_offsets',
    ));
  it('reversed offsets', () =>
    expectCode(
      () => readSafetensors(fileWithHeader({ a: { dtype: 'U8', shape: [0], data_offsets: [4, 0] } }, 4)),
      'safetensors_bad_offsets',
    ));
  it('names the tensor in the error', () => {
    try {
      readSafetensors(fileWithHeader({ 'model.w': { dtype: 'Q4', shape: [2], data_offsets: [0, 2] } }, 2));
    } catch (e) {
      expect((e as LoraEdgeError).tensor).toBe('model.w');
      expect((e as Error).message).toContain('model.w');
    }
  });
  it('header-only parse needs only the head of a file', () => {
    const bytes = readBytes(join(FIXTURES, 'models/stories260k/model.safetensors'));
    const n = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength);
    const h = parseSafetensorsHeader(bytes.subarray(0, 8 + n), bytes.byteLength);
    expect(h.tensors.length).toBe(47);
    expect(h.byName.get('model.embed_tokens.weight')?.shape).toEqual([512, 64]);
  });
});

describe('safetensors fuzz', () => {
  const seeds = fixtureFiles.slice(0, 6).map(readBytes);

  function parseOrTypedError(bytes: Uint8Array): void {
    try {
      const f = readSafetensors(bytes);
      for (const n of f.names()) f.tensor(n);
    } catch (e) {
      if (!(e instanceof LoraEdgeError)) throw e;
    }
  }

  it('mutated fixture bytes give a file or a typed error', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: seeds.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
        fc.option(fc.nat(), { nil: undefined }),
        (which, edits, cut) => {
          const src = seeds[which] as Uint8Array;
          // Bias the edits to the header, where the parser lives.
          const limit = Math.min(src.byteLength, 8 + readHeaderLength(src, src.byteLength));
          const b = src.slice(0, cut === undefined ? src.byteLength : cut % (src.byteLength + 1));
          for (const [pos, val] of edits) if (b.byteLength > 0) b[pos % Math.min(limit, b.byteLength)] = val;
          parseOrTypedError(b);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('random JSON headers give a file or a typed error', () => {
    const entry = fc.record(
      {
        dtype: fc.oneof(fc.constantFrom(...Object.keys(DTYPES), 'F8', ''), fc.anything()),
        shape: fc.oneof(fc.array(fc.oneof(fc.nat(64), fc.integer(), fc.double())), fc.anything()),
        data_offsets: fc.oneof(fc.tuple(fc.nat(512), fc.nat(512)), fc.array(fc.integer()), fc.anything()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), entry, { maxKeys: 5 }), fc.nat(512), (header, dataBytes) => {
        parseOrTypedError(fileWithHeader(header, dataBytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('plans never produce an unparsable file', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(
          fc.record({
            name: fc.string({ minLength: 1 }),
            dtype: fc.constantFrom(...(Object.keys(DTYPES) as DType[])),
            shape: fc.array(fc.nat(5), { maxLength: 3 }),
          }),
          { selector: (s) => s.name, maxLength: 6 },
        ),
        (specs) => {
          const valid = specs.filter((s) => s.name !== '__metadata__');
          const plan = planSafetensors(valid);
          const file = new Uint8Array(plan.totalSize);
          file.set(plan.head);
          const f = readSafetensors(file);
          expect(f.names()).toEqual(valid.map((s) => s.name));
        },
      ),
      { numRuns: 500 },
    );
  });
});
