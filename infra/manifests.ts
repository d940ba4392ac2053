/**
 * Loading of the runner's deployment files for the offline checks (k8s.test.ts,
 * dockerfile.test.ts): the Kubernetes manifests under infra/k8s and the image's Dockerfile.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Dockerfile, DockerfileParser, type Env, type From, type Instruction } from 'dockerfile-ast';
import { parseAllDocuments } from 'yaml';

export const INFRA = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(INFRA, '..');
export const K8S = join(INFRA, 'k8s');

/** The manifest files, sorted. */
export const manifestFiles = (): string[] =>
  readdirSync(K8S)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort();

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field by the tests.
export type Obj = Record<string, any>;

export interface Doc {
  file: string;
  index: number;
  value: Obj;
  errors: string[];
}

/** Every YAML document of every manifest file, with the parser's errors and warnings. */
export function loadDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const file of manifestFiles()) {
    const text = readFileSync(join(K8S, file), 'utf8');
    parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true }).forEach((d, index) => {
      const errors = [...d.errors, ...d.warnings].map((e) => e.message);
      docs.push({ file, index, value: d.toJS() as Obj, errors });
    });
  }
  return docs;
}

export const resources = (docs: Doc[]): Doc[] => docs.filter((d) => d.file !== 'kustomization.yaml' && d.value !== null);

export function only(docs: Doc[], kind: string, name?: string): Obj {
  const found = docs.filter((d) => d.value.kind === kind && (name === undefined || d.value.metadata?.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` named ${name}` : ''}, found ${found.length}`);
  return found[0]!.value;
}

export const readRepoFile = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

// ---- the Dockerfile ----

export const DOCKERFILE = 'gpu-runner/Dockerfile';

export interface Stage {
  /** The `AS` name, if any. */
  name: string | null;
  from: From;
  /** The base image with the global ARG defaults substituted. */
  image: string;
  /** FROM and everything up to the next FROM. */
  instructions: Instruction[];
}

export const parseDockerfile = (content = readRepoFile(DOCKERFILE)): Dockerfile => DockerfileParser.parse(content);

/** The ARGs declared before the first FROM, with their defaults. */
export function globalArgs(df: Dockerfile): Record<string, string> {
  const args: Record<string, string> = {};
  for (const a of df.getInitialARGs()) {
    const p = a.getProperty();
    if (p) args[p.getName()] = p.getValue() ?? '';
  }
  return args;
}

/** `${NAME}` and `$NAME` replaced from vars (unknown names left as they are). */
export const substitute = (s: string, vars: Record<string, string>): string =>
  s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, a, b) => vars[a ?? b] ?? all);

export function stages(df: Dockerfile): Stage[] {
  const args = globalArgs(df);
  const out: Stage[] = [];
  for (const i of df.getInstructions()) {
    if (i.getKeyword() === 'FROM') {
      const from = i as From;
      out.push({ name: from.getBuildStage(), from, image: substitute(from.getImage() ?? '', args), instructions: [i] });
    } else out.at(-1)?.instructions.push(i);
  }
  return out;
}

/** The environment the final stage's ENV instructions give the image. */
export function imageEnv(df = parseDockerfile()): Record<string, string> {
  const env: Record<string, string> = {};
  for (const i of stages(df).at(-1)?.instructions ?? [])
    if (i.getKeyword() === 'ENV') for (const p of (i as Env).getProperties()) env[p.getName()] = p.getValue() ?? '';
  return env;
}
