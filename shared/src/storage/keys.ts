/**
 * The R2 layout. Everything is content-addressed and immutable once written:
 *
 *   models/<digest>/{config.json, model.safetensors}
 *   adapters/<tenant>/<name>/<digest>/{adapter_config.json, adapter_model.safetensors}
 *   artifacts/<recipe-sha>/{manifest.json, …}   (manifest.json written last: see artifact.ts)
 */
import { LoraEdgeError } from '../errors.ts';
import { DIGEST_RE } from './digest.ts';

export const MODEL_CONFIG_FILE = 'config.json';
export const MODEL_WEIGHTS_FILE = 'model.safetensors';
export const ARTIFACT_MANIFEST_FILE = 'manifest.json';

/** A path segment that cannot climb or split: no slashes, no `.`/`..`. */
const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function segment(value: string, field: string): string {
  if (!SEGMENT_RE.test(value) || value.length > 128 || value.includes('..')) {
    throw new LoraEdgeError('invalid_argument', `"${value}" is not a valid storage key segment`, { field });
  }
  return value;
}

function digest(value: string, field: string): string {
  if (!DIGEST_RE.test(value)) throw new LoraEdgeError('invalid_argument', `"${value}" is not a SHA-256 hex digest`, { field });
  return value;
}

export function modelPrefix(modelDigest: string): string {
  return `models/${digest(modelDigest, 'digest')}/`;
}

export function modelKey(modelDigest: string, file: string): string {
  return modelPrefix(modelDigest) + segment(file, 'file');
}

export function adapterPrefix(tenant: string, name: string, adapterDigest: string): string {
  return `adapters/${segment(tenant, 'tenant')}/${segment(name, 'name')}/${digest(adapterDigest, 'digest')}/`;
}

export function adapterKey(tenant: string, name: string, adapterDigest: string, file: string): string {
  return adapterPrefix(tenant, name, adapterDigest) + segment(file, 'file');
}

export function artifactPrefix(recipe: string): string {
  return `artifacts/${digest(recipe, 'recipe')}/`;
}

export function artifactKey(recipe: string, file: string): string {
  return artifactPrefix(recipe) + segment(file, 'file');
}

/** Whether `file` may name an object inside a prefix (for routes that take a file name). */
export function isSafeFileName(file: string): boolean {
  return SEGMENT_RE.test(file) && file.length <= 128 && !file.includes('..');
}
