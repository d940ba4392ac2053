/**
 * Merged artifacts under `artifacts/<recipe-sha>/`. The manifest is the commit record: data
 * objects go first, the manifest last, so a crash mid-write leaves nothing a reader can see;
 * deletion runs the other way round (manifest first).
 */
import { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { bufferSource, DIGEST_RE, sha256Hex } from './digest.ts';
import { ARTIFACT_MANIFEST_FILE, artifactKey, artifactPrefix } from './keys.ts';
import { listAll, type ObjectStore } from './store.ts';

export const ARTIFACT_KINDS = ['adapter', 'fused', 'fused-nf4'] as const;
export type ArtifactKind = (typeof ARTIFACT_KINDS)[number];
export const ARTIFACT_FORMAT = 'lora-edge.artifact/v1';

const digest = z.string().regex(DIGEST_RE, 'a SHA-256 hex digest');

export const ArtifactFileSchema = z.object({
  name: z.string().min(1),
  size: z.number().int().nonnegative(),
  sha256: digest,
  content_type: z.string().optional(),
});
export type ArtifactFile = z.infer<typeof ArtifactFileSchema>;

export const ArtifactManifestSchema = z.object({
  format: z.literal(ARTIFACT_FORMAT),
  recipe: digest,
  kind: z.enum(ARTIFACT_KINDS),
  files: z.array(ArtifactFileSchema).min(1),
  created_at: z.string(),
  /** What was computed and how (the canonical recipe, method semantics, inputs): free-form JSON. */
  spec: z.record(z.string(), z.unknown()),
});
export type ArtifactManifest = z.infer<typeof ArtifactManifestSchema>;

export interface ArtifactInput {
  name: string;
  data: Uint8Array | string;
  contentType?: string;
}

export async function writeArtifact(
  store: ObjectStore,
  recipe: string,
  kind: ArtifactKind,
  files: readonly ArtifactInput[],
  spec: Record<string, unknown>,
  now: Date = new Date(),
): Promise<ArtifactManifest> {
  if (files.some((f) => f.name === ARTIFACT_MANIFEST_FILE)) {
    throw new LoraEdgeError('invalid_argument', `${ARTIFACT_MANIFEST_FILE} is written by writeArtifact itself`, {
      file: ARTIFACT_MANIFEST_FILE,
    });
  }
  const listed: ArtifactFile[] = [];
  for (const f of files) {
    const data = bufferSource(f.data);
    const entry: ArtifactFile = { name: f.name, size: data.byteLength, sha256: await sha256Hex(data) };
    if (f.contentType) entry.content_type = f.contentType;
    await store.put(artifactKey(recipe, f.name), data, f.contentType ? { httpMetadata: { contentType: f.contentType } } : {});
    listed.push(entry);
  }
  const manifest: ArtifactManifest = { format: ARTIFACT_FORMAT, recipe, kind, files: listed, created_at: now.toISOString(), spec };
  await store.put(artifactKey(recipe, ARTIFACT_MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`, {
    httpMetadata: { contentType: 'application/json' },
  });
  return manifest;
}

/** The manifest of a complete artifact, or null while there is none. */
export async function readArtifactManifest(store: ObjectStore, recipe: string): Promise<ArtifactManifest | null> {
  const obj = await store.get(artifactKey(recipe, ARTIFACT_MANIFEST_FILE));
  if (!obj) return null;
  let json: unknown;
  try {
    json = JSON.parse(await obj.text());
  } catch {
    throw new LoraEdgeError('storage_invalid', 'the artifact manifest is not JSON', { file: artifactKey(recipe, ARTIFACT_MANIFEST_FILE) });
  }
  const r = ArtifactManifestSchema.safeParse(json);
  if (!r.success || r.data.recipe !== recipe) {
    throw new LoraEdgeError('storage_invalid', 'the artifact manifest does not match its schema or key', {
      file: artifactKey(recipe, ARTIFACT_MANIFEST_FILE),
    });
  }
  return r.data;
}

/** Removes an artifact: the manifest first, so it stops being visible before its data goes. */
export async function deleteArtifact(store: ObjectStore, recipe: string): Promise<void> {
  await store.delete(artifactKey(recipe, ARTIFACT_MANIFEST_FILE));
  const rest = await listAll(store, artifactPrefix(recipe));
  if (rest.length) await store.delete(rest.map((o) => o.key));
}
