import { LoraEdgeError } from '../errors.ts';
import { type DType, dtypeSize, isDType } from '../tensor/dtype.ts';

/** The reference implementation refuses headers above 100 MB; so do we, before allocating. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N, the JSON header's byte length (padding included). */
  headerLength: number;
  /** 8 + N: where tensor data starts. */
  dataStart: number;
  fileSize: number;
  metadata: Record<string, string> | undefined;
  /** In the header's key order. */
  tensors: TensorInfo[];
  byName: Map<string, TensorInfo>;
}

/** N from the first 8 bytes, checked against the file size and the 100 MB cap. */
export function readHeaderLength(prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new LoraEdgeError('safetensors_truncated', `file is ${fileSize} bytes; a safetensors file starts with an 8-byte header length`);
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const n = dv.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new LoraEdgeError('safetensors_header_too_large', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new LoraEdgeError('safetensors_truncated', `header length ${len} runs past the end of the ${fileSize}-byte file`);
  }
  if (len < 2) throw new LoraEdgeError('safetensors_header_invalid', `header length ${len} is too short for a JSON object`);
  return len;
}

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses and validates the header. `prefix` holds at least the first 8 + N bytes; `fileSize`
 * is the whole file's size (so a range read of the head is enough to inspect a file).
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number): SafetensorsHeader {
  const headerLength = readHeaderLength(prefix, fileSize);
  if (prefix.byteLength < 8 + headerLength) {
    throw new LoraEdgeError(
      'safetensors_truncated',
      `need the first ${8 + headerLength} bytes to read the header, got ${prefix.byteLength}`,
    );
  }
  let text: string;
  try {
    text = decoder.decode(prefix.subarray(8, 8 + headerLength));
  } catch {
    throw new LoraEdgeError('safetensors_header_invalid', 'header is not valid UTF-8');
  }
  if (!text.startsWith('{')) throw new LoraEdgeError('safetensors_header_invalid', 'header does not start with "{"');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LoraEdgeError('safetensors_header_invalid', `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new LoraEdgeError('safetensors_header_invalid', 'header is not a JSON object');
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> | undefined;
  const tensors: TensorInfo[] = [];
  const obj = json as Record<string, unknown>;
  for (const name of headerKeyOrder(text, obj)) {
    const entry = obj[name];
    if (name === '__metadata__') {
      metadata = parseMetadata(entry);
      continue;
    }
    const info = parseEntry(name, entry, dataSize);
    info.begin += dataStart;
    info.end += dataStart;
    tensors.push(info);
  }
  checkLayout(tensors, dataStart, fileSize);
  return { headerLength, dataStart, fileSize, metadata, tensors, byName: new Map(tensors.map((t) => [t.name, t])) };
}

function parseMetadata(entry: unknown): Record<string, string> {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new LoraEdgeError('safetensors_header_invalid', '__metadata__ must be an object of strings', { field: '__metadata__' });
  }
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== 'string') {
      throw new LoraEdgeError('safetensors_header_invalid', `__metadata__["${k}"] must be a string`, { field: '__metadata__' });
    }
    out[k] = v;
  }
  return out;
}

function parseEntry(name: string, entry: unknown, dataSize: number): TensorInfo {
  const place = { tensor: name };
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new LoraEdgeError('safetensors_header_invalid', 'entry must be an object with dtype, shape and data_offsets', place);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string') throw new LoraEdgeError('safetensors_header_invalid', 'dtype is missing or not a string', place);
  if (!isDType(dtype)) throw new LoraEdgeError('safetensors_unknown_dtype', `unknown dtype "${dtype}"`, place);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new LoraEdgeError('safetensors_bad_shape', 'shape must be an array of non-negative integers', place);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new LoraEdgeError('safetensors_bad_offsets', 'data_offsets must be two non-negative integers', place);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) throw new LoraEdgeError('safetensors_bad_offsets', `data_offsets [${begin}, ${end}] end before they begin`, place);
  if (end > dataSize) {
    throw new LoraEdgeError('safetensors_bad_offsets', `data_offsets [${begin}, ${end}] run past the ${dataSize} data bytes`, place);
  }
  // The element count may be forged to overflow: multiply step by step against the file size.
  const width = dtypeSize(dtype);
  let bytes = (shape as number[]).includes(0) ? 0 : width;
  for (const d of shape as number[]) {
    if (bytes === 0) break;
    bytes *= d;
    if (bytes > dataSize) throw new LoraEdgeError('safetensors_bad_shape', `shape [${shape}] needs more bytes than the file holds`, place);
  }
  if (bytes !== end - begin) {
    throw new LoraEdgeError(
      'safetensors_bad_shape',
      `shape [${shape}] of ${dtype} needs ${bytes} bytes but data_offsets span ${end - begin}`,
      place,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

/** Tensors must tile the data section exactly: no overlap, no gap, nothing left over. */
function checkLayout(tensors: TensorInfo[], dataStart: number, fileSize: number): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = dataStart;
  for (const t of sorted) {
    if (t.begin < cursor) {
      throw new LoraEdgeError('safetensors_overlap', `data overlaps the previous tensor at byte ${t.begin - dataStart}`, {
        tensor: t.name,
      });
    }
    if (t.begin > cursor) {
      throw new LoraEdgeError('safetensors_bad_offsets', `gap of ${t.begin - cursor} bytes before this tensor's data`, { tensor: t.name });
    }
    cursor = t.end;
  }
  if (cursor !== fileSize) {
    const what = cursor < fileSize ? `${fileSize - cursor} trailing bytes after the last tensor` : 'data ends past the file';
    throw new LoraEdgeError('safetensors_bad_offsets', what);
  }
}

/**
 * JS objects list integer-like keys first, whatever the text's order; a tensor named "0" would
 * move. Only then do we rescan the text for the true top-level key order (last duplicate wins,
 * as in JSON.parse).
 */
function headerKeyOrder(text: string, obj: Record<string, unknown>): string[] {
  const keys = Object.keys(obj);
  if (!keys.some((k) => /^(0|[1-9]\d*)$/.test(k))) return keys;
  const order: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (k < text.length && /\s/.test(text[k] as string)) k++;
        if (text[k] === ':') order.push(JSON.parse(text.slice(i, j + 1)) as string);
      }
      i = j;
    } else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') depth--;
  }
  const last = new Map(order.map((k, i) => [k, i]));
  return order.filter((k, i) => last.get(k) === i);
}
