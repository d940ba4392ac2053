/** Node-side I/O over the pure domain: safetensors read by range, model and adapter folders. */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type LoraAdapter,
  LoraEdgeError,
  loadLoraAdapter,
  type ModelConfig,
  parseModelConfig,
  parseSafetensorsHeader,
  parseShardIndex,
  readHeaderLength,
  type SafetensorsHeader,
  SHARD_INDEX_FILE,
  shardFiles,
  type Tensor,
  type TensorInfo,
} from '@lora-edge/shared';

/** A safetensors file opened for range reads: only the header is read up front. */
export interface SafetensorsSource {
  path: string;
  header: SafetensorsHeader;
  read(info: TensorInfo): Tensor;
  close(): void;
}

function readAt(fd: number, position: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) throw new LoraEdgeError('safetensors_truncated', `file ended at byte ${position + done}`);
    done += n;
  }
  return buf;
}

export function openSafetensors(path: string): SafetensorsSource {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const first = readAt(fd, 0, Math.min(8, size));
    const n = readHeaderLength(first, size);
    const header = parseSafetensorsHeader(readAt(fd, 0, 8 + n), size);
    return {
      path,
      header,
      read: (info) => ({ dtype: info.dtype, shape: [...info.shape], data: readAt(fd, info.begin, info.end - info.begin) }),
      close: () => closeSync(fd),
    };
  } catch (e) {
    closeSync(fd);
    throw e instanceof LoraEdgeError ? e.at({ file: path }) : e;
  }
}

export interface ModelDir {
  dir: string;
  configText: string;
  config: ModelConfig;
  /** Shards in order (one entry for a single model.safetensors). */
  files: SafetensorsSource[];
  sharded: boolean;
  tensors: Map<string, { source: SafetensorsSource; info: TensorInfo }>;
  close(): void;
}

export function isModelDir(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) && (existsSync(join(dir, 'model.safetensors')) || existsSync(join(dir, SHARD_INDEX_FILE)));
}

export function isAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE));
}

export function assertDir(path: string, what: string): void {
  if (!existsSync(path)) throw new LoraEdgeError('invalid_argument', `${what} ${path} does not exist`);
  if (!statSync(path).isDirectory()) throw new LoraEdgeError('invalid_argument', `${what} ${path} is not a directory`);
}

/** Opens a Hugging Face model folder: config.json plus model.safetensors or a sharded index. */
export function openModelDir(dir: string): ModelDir {
  assertDir(dir, 'model');
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new LoraEdgeError('invalid_argument', 'a model folder needs config.json', { file: configPath });
  const configText = readFileSync(configPath, 'utf8');
  const config = parseModelConfig(configText, configPath);
  const indexPath = join(dir, SHARD_INDEX_FILE);
  const sharded = existsSync(indexPath);
  let names: string[];
  if (sharded) names = shardFiles(parseShardIndex(readFileSync(indexPath, 'utf8'), indexPath));
  else if (existsSync(join(dir, 'model.safetensors'))) names = ['model.safetensors'];
  else throw new LoraEdgeError('invalid_argument', `no model.safetensors or ${SHARD_INDEX_FILE} in ${dir}`, { file: dir });
  const files: SafetensorsSource[] = [];
  const tensors = new Map<string, { source: SafetensorsSource; info: TensorInfo }>();
  try {
    for (const name of names) {
      const source = openSafetensors(join(dir, name));
      files.push(source);
      for (const info of source.header.tensors) {
        if (tensors.has(info.name))
          throw new LoraEdgeError('sharded_index_invalid', 'tensor appears in two shards', { file: source.path, tensor: info.name });
        tensors.set(info.name, { source, info });
      }
    }
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
  return {
    dir,
    configText,
    config,
    files,
    sharded,
    tensors,
    close: () => {
      for (const f of files) f.close();
    },
  };
}

export function readAdapterFiles(dir: string): { configText: string; weights: Uint8Array; configFile: string; weightsFile: string } {
  assertDir(dir, 'adapter');
  const configFile = join(dir, ADAPTER_CONFIG_FILE);
  const weightsFile = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(configFile)) throw new LoraEdgeError('invalid_argument', `an adapter folder needs ${ADAPTER_CONFIG_FILE}`, { file: dir });
  if (!existsSync(weightsFile))
    throw new LoraEdgeError('invalid_argument', `an adapter folder needs ${ADAPTER_WEIGHTS_FILE}`, { file: dir });
  const b = readFileSync(weightsFile);
  return {
    configText: readFileSync(configFile, 'utf8'),
    weights: new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
    configFile,
    weightsFile,
  };
}

export function loadAdapterDir(dir: string): LoraAdapter {
  return loadLoraAdapter(readAdapterFiles(dir));
}

/** A model folder as the engine reads it: tensors on demand by name. */
export function modelSource(model: ModelDir): { config: ModelConfig; get(name: string): Tensor | undefined } {
  return {
    config: model.config,
    get(name) {
      const t = model.tensors.get(name);
      return t ? t.source.read(t.info) : undefined;
    },
  };
}
