/**
 * Offline checks of the runner's Kubernetes manifests (infra/k8s): no cluster, no kubectl.
 *
 * 1. Every file parses as YAML (no errors, no warnings, no duplicate keys).
 * 2. Every resource validates against the Kubernetes schemas: kubernetes-models (the core API) and
 *    @kubernetes-models/keda (ScaledObject, TriggerAuthentication), each resource constructed and
 *    `.validate()`d. Those JSON schemas allow unknown fields (as the OpenAPI documents do), so the
 *    same resources are also type-checked against the packages' TypeScript interfaces, whose
 *    excess-property checks catch a misspelt field at any depth (what kubectl's strict field
 *    validation would refuse).
 * 3. What the schemas cannot see: the GPU request, probes on the container port, the grace period
 *    against the drain, selectors, KEDA's target and its source, the Pod Security "restricted"
 *    rules, and the runner's environment (every variable it reads is set or documented).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { type Doc, INFRA, imageEnv, K8S, loadDocs, manifestFiles, type Obj, only, ROOT, resources } from './manifests.ts';

type Validatable = new (data: never) => { validate(): void };

/** apiVersion/kind → the model class and its TypeScript interface. */
const MODELS: Record<string, { Model: Validatable; module: string; type: string }> = {
  'v1/Namespace': { Model: Namespace, module: 'kubernetes-models/v1', type: 'INamespace' },
  'v1/ConfigMap': { Model: ConfigMap, module: 'kubernetes-models/v1', type: 'IConfigMap' },
  'v1/Secret': { Model: Secret, module: 'kubernetes-models/v1', type: 'ISecret' },
  'v1/Service': { Model: Service, module: 'kubernetes-models/v1', type: 'IService' },
  'apps/v1/Deployment': { Model: Deployment, module: 'kubernetes-models/apps/v1', type: 'IDeployment' },
  'policy/v1/PodDisruptionBudget': { Model: PodDisruptionBudget, module: 'kubernetes-models/policy/v1', type: 'IPodDisruptionBudget' },
  'keda.sh/v1alpha1/ScaledObject': { Model: ScaledObject, module: '@kubernetes-models/keda/keda.sh/v1alpha1', type: 'IScaledObject' },
  'keda.sh/v1alpha1/TriggerAuthentication': {
    Model: TriggerAuthentication,
    module: '@kubernetes-models/keda/keda.sh/v1alpha1',
    type: 'ITriggerAuthentication',
  },
};

/** The runner's environment as designed (gpu-runner/src/server/config.ts reads these). */
const DESIGNED_ENV = [
  'LORA_EDGE_GATEWAY_URL',
  'LORA_EDGE_RUNNER_TOKEN',
  'LORA_EDGE_RUNNER_ID',
  'LORA_EDGE_RUNNER_HOST',
  'LORA_EDGE_RUNNER_PORT',
  'LORA_EDGE_RUNNER_URL',
  'LORA_EDGE_BLOBS',
  'LORA_EDGE_S3_ENDPOINT',
  'LORA_EDGE_S3_BUCKET',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'LORA_EDGE_CACHE_DIR',
  'LORA_EDGE_BACKEND',
  'LORA_EDGE_SLOTS',
  'LORA_EDGE_KV_BYTES',
  'LORA_EDGE_ADAPTER_BYTES',
  'LORA_EDGE_MAX_MODEL_BYTES',
  'LORA_EDGE_DRAIN_MS',
];
const SECRET_ENV = ['LORA_EDGE_RUNNER_TOKEN', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];

const docs = loadDocs();
const res = resources(docs);
const deployment = only(res, 'Deployment', 'lora-edge-runner');
const podSpec: Obj = deployment.spec.template.spec;
const container: Obj = podSpec.containers.find((c: Obj) => c.name === 'runner');
const configMap = only(res, 'ConfigMap', 'lora-edge-runner-config');
const config: Record<string, string> = configMap.data;
const secretExample = only(res, 'Secret', 'lora-edge-runner');
const service = only(res, 'Service', 'lora-edge-runner');
const pdb = only(res, 'PodDisruptionBudget', 'lora-edge-runner');
const scaledObject = only(res, 'ScaledObject', 'lora-edge-runner');
const triggerAuth = only(res, 'TriggerAuthentication');
const kustomization = only(docs, 'Kustomization');
const podLabels: Record<string, string> = deployment.spec.template.metadata.labels;
const env: Obj[] = container.env;
const envNames = env.map((e) => e.name as string);
const setInPod = new Set([...envNames, ...Object.keys(config), ...Object.keys(imageEnv())]);
const containerPort: Obj = container.ports.find((p: Obj) => p.name === 'http');

const label = (d: Doc) => `${d.file}#${d.index} ${d.value?.kind}/${d.value?.metadata?.name}`;
const isSubset = (sub: Record<string, string>, of: Record<string, string>) => Object.entries(sub).every(([k, v]) => of[k] === v);

/** A named or numbered port of the runner container → its number. */
function resolvePort(port: string | number): number | undefined {
  if (typeof port === 'number') return container.ports.some((p: Obj) => p.containerPort === port) ? port : undefined;
  return container.ports.find((p: Obj) => p.name === port)?.containerPort;
}

/** Kubernetes quantities (binary and decimal suffixes) → bytes. */
function quantity(q: string | number): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(q));
  if (!m) throw new Error(`not a quantity: ${q}`);
  const unit = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * unit;
}

/** The runner's byte-size settings: an integer, or a number with a binary unit (as config.ts reads them). */
function byteSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(s);
  if (!m) throw new Error(`not a byte size: ${s}`);
  return Math.floor(Number(m[1]) * ({ '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase()] ?? Number.NaN));
}

/** Every environment variable name the runner's sources (not its tests) mention. */
function runnerReads(): string[] {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && e.name !== 'testing.ts')
        for (const m of readFileSync(p, 'utf8').matchAll(/\b(?:LORA_EDGE|AWS)_[A-Z0-9_]+\b/g)) names.add(m[0]);
    }
  };
  walk(join(ROOT, 'gpu-runner', 'src'));
  return [...names].sort();
}

describe('the manifests parse', () => {
  it('finds the expected files', () => {
    expect(manifestFiles()).toEqual([
      'kustomization.yaml',
      'namespace.yaml',
      'runner-configmap.yaml',
      'runner-deployment.yaml',
      'runner-pdb.yaml',
      'runner-scaledobject.yaml',
      'runner-secret.example.yaml',
      'runner-service.yaml',
    ]);
  });

  it.each(docs.map((d) => [label(d), d] as const))('%s is YAML without errors or warnings', (_, d) => {
    expect(d.errors).toEqual([]);
    expect(d.value).toBeTypeOf('object');
  });
});

describe('the resources validate against the Kubernetes and KEDA schemas', () => {
  it.each(res.map((d) => [label(d), d] as const))('%s', (_, d) => {
    const model = MODELS[`${d.value.apiVersion}/${d.value.kind}`];
    expect(model, `no schema for ${d.value.apiVersion}/${d.value.kind}`).toBeDefined();
    expect(() => new model!.Model(d.value as never).validate()).not.toThrow();
  });

  it('a broken resource fails validation (the validator is live)', () => {
    const broken = structuredClone(deployment);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
    expect(() => new Deployment(broken as never).validate()).toThrow(/containerPort/);
    const noTarget = structuredClone(scaledObject);
    delete noTarget.spec.scaleTargetRef;
    expect(() => new ScaledObject(noTarget as never).validate()).toThrow(/scaleTargetRef/);
  });

  /** Type-checks the given resources against the models' interfaces; returns the diagnostics. */
  function typecheck(items: Doc[]): string[] {
    const file = join(INFRA, '__manifests_typecheck__.ts');
    const used = new Map<string, Set<string>>();
    const decls = items.map((d, i) => {
      const model = MODELS[`${d.value.apiVersion}/${d.value.kind}`]!;
      used.set(model.module, (used.get(model.module) ?? new Set()).add(model.type));
      return `// ${label(d)}\nexport const r${i}: ${model.type} = ${JSON.stringify(d.value, null, 2)};`;
    });
    const imports = [...used].map(([module, types]) => `import type { ${[...types].join(', ')} } from '${module}';`);
    const source = [...imports, ...decls].join('\n');
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      skipLibCheck: true,
      types: [],
    };
    const host = ts.createCompilerHost(options);
    const { getSourceFile, fileExists, readFile } = host;
    host.getSourceFile = (f, lang, ...rest) =>
      f === file ? ts.createSourceFile(f, source, lang) : getSourceFile.call(host, f, lang, ...rest);
    host.fileExists = (f) => f === file || fileExists.call(host, f);
    host.readFile = (f) => (f === file ? source : readFile.call(host, f));
    const program = ts.createProgram([file], options, host);
    return ts.getPreEmitDiagnostics(program).map((diag) => {
      const where = diag.file && diag.start !== undefined ? diag.file.getLineAndCharacterOfPosition(diag.start) : undefined;
      // The resource it is in: the `// file#n Kind/name` comment above its declaration.
      const at = diag.start === undefined ? -1 : source.lastIndexOf('\n// ', diag.start);
      const owner = at < 0 ? '' : `, in ${source.slice(at + 4, source.indexOf('\n', at + 1))}`;
      return `${ts.flattenDiagnosticMessageText(diag.messageText, '\n')}${where ? ` (line ${where.line + 1}${owner})` : ''}`;
    });
  }

  it('every field is a known field of its type (strict, as kubectl --validate=strict)', () => {
    expect(typecheck(res)).toEqual([]);
  }, 30_000);

  it('a misspelt field is caught (the strict check is live)', () => {
    const d = res.find((r) => r.value.kind === 'Deployment')!;
    const typo = structuredClone(d);
    typo.value.spec.template.spec.containers[0].readinesProbe = typo.value.spec.template.spec.containers[0].readinessProbe;
    const so = res.find((r) => r.value.kind === 'ScaledObject')!;
    const typo2 = structuredClone(so);
    typo2.value.spec.minReplicas = 1;
    const found = typecheck([typo, typo2]);
    expect(found.join('\n')).toMatch(/readinesProbe/);
    expect(found.join('\n')).toMatch(/minReplicas/);
  }, 30_000);
});

describe('kustomization', () => {
  const listed: string[] = kustomization.resources;

  it('lists every manifest but the Secret example, and only existing files', () => {
    for (const f of listed) expect(existsSync(join(K8S, f)), f).toBe(true);
    const expected = manifestFiles().filter((f) => f !== 'kustomization.yaml' && !f.includes('example'));
    expect([...listed].sort()).toEqual(expected);
  });

  it('puts everything in the Namespace it creates', () => {
    expect(kustomization.namespace).toBe(only(res, 'Namespace').metadata.name);
    for (const d of res) if (d.value.kind !== 'Namespace') expect(d.value.metadata.namespace, label(d)).toBeUndefined();
  });

  it('pins the runner image by a tag other than latest, and rewrites the image the Deployment names', () => {
    const image: string = container.image;
    const [repo, tag] = image.split(':');
    expect(tag).toMatch(/^\d+\.\d+\.\d+/);
    const entry = kustomization.images.find((i: Obj) => i.name === repo);
    expect(entry, `kustomization images[] entry for ${repo}`).toBeDefined();
    expect(entry.newTag ?? entry.digest).toBeDefined();
    expect(String(entry.newTag)).not.toBe('latest');
  });
});

describe('the Deployment', () => {
  it('requests exactly one GPU, in limits (and requests equal to them)', () => {
    expect(container.resources.limits['nvidia.com/gpu']).toBe(1);
    const requested = container.resources.requests?.['nvidia.com/gpu'];
    if (requested !== undefined) expect(requested).toBe(container.resources.limits['nvidia.com/gpu']);
    for (const c of podSpec.containers as Obj[])
      if (c !== container) expect(c.resources?.limits?.['nvidia.com/gpu'], `${c.name} must not take a GPU`).toBeUndefined();
  });

  it('lands on GPU nodes: a GPU node selector and a toleration for the GPU taint', () => {
    expect(Object.keys(podSpec.nodeSelector ?? {}).some((k) => k.startsWith('nvidia.com/'))).toBe(true);
    expect(podSpec.tolerations).toContainEqual(expect.objectContaining({ key: 'nvidia.com/gpu', effect: 'NoSchedule' }));
  });

  it('has CPU and memory requests and a memory limit', () => {
    expect(container.resources.requests.cpu).toBeDefined();
    expect(quantity(container.resources.requests.memory)).toBeGreaterThan(0);
    expect(quantity(container.resources.limits.memory)).toBeGreaterThanOrEqual(quantity(container.resources.requests.memory));
  });

  it('listens on the port the runner binds (LORA_EDGE_RUNNER_PORT) and advertises it', () => {
    expect(containerPort.containerPort).toBe(Number(config.LORA_EDGE_RUNNER_PORT));
    expect(config.LORA_EDGE_RUNNER_HOST).toBe('0.0.0.0');
  });

  it.each(['startupProbe', 'readinessProbe', 'livenessProbe'])('%s: GET /healthz on the container port', (probe) => {
    const p: Obj = container[probe];
    expect(p, probe).toBeDefined();
    expect(p.httpGet.path).toBe('/healthz');
    expect(resolvePort(p.httpGet.port)).toBe(containerPort.containerPort);
    expect(p.timeoutSeconds ?? 1).toBeLessThan(p.periodSeconds ?? 10);
  });

  it('gives the runner time to start (startup) and does not kill it on one slow answer (liveness)', () => {
    const budget = (p: Obj) => (p.periodSeconds ?? 10) * (p.failureThreshold ?? 3);
    expect(budget(container.startupProbe)).toBeGreaterThanOrEqual(120);
    expect(budget(container.livenessProbe)).toBeGreaterThanOrEqual(30);
  });

  it('terminationGracePeriodSeconds exceeds LORA_EDGE_DRAIN_MS, with room to exit', () => {
    const drainMs = Number(config.LORA_EDGE_DRAIN_MS);
    expect(Number.isInteger(drainMs) && drainMs > 0).toBe(true);
    expect(podSpec.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(drainMs + 10_000);
  });

  it('leaves the replica count to KEDA', () => {
    expect(deployment.spec.replicas).toBeUndefined();
  });

  it('selects its own pods', () => {
    expect(isSubset(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
  });

  it('surges rather than dropping capacity on rollout', () => {
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
  });
});

describe('security (Pod Security "restricted")', () => {
  const uid = podSpec.securityContext.runAsUser;

  it('runs as a fixed non-root uid', () => {
    expect(podSpec.securityContext.runAsNonRoot).toBe(true);
    expect(container.securityContext.runAsNonRoot).toBe(true);
    expect(Number.isInteger(uid) && uid > 0).toBe(true);
    expect(podSpec.securityContext.runAsGroup).toBeGreaterThan(0);
    expect(container.securityContext.runAsUser ?? uid).toBe(uid);
  });

  it('locks the container down', () => {
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(container.securityContext.capabilities.add ?? []).toEqual([]);
    expect(container.securityContext.privileged ?? false).toBe(false);
    expect(podSpec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
    for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) expect(podSpec[k] ?? false, k).toBe(false);
    expect(podSpec.automountServiceAccountToken).toBe(false);
  });

  it('uses only emptyDir volumes, and the namespace enforces the restricted profile', () => {
    for (const v of podSpec.volumes as Obj[]) expect(Object.keys(v).sort(), v.name).toEqual(['emptyDir', 'name']);
    expect(only(res, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('gives the read-only root filesystem writable emptyDirs for LORA_EDGE_CACHE_DIR and /tmp', () => {
    const mounts = new Map((container.volumeMounts as Obj[]).map((m) => [m.mountPath as string, m.name as string]));
    const volumes = new Map((podSpec.volumes as Obj[]).map((v) => [v.name as string, v]));
    for (const path of [config.LORA_EDGE_CACHE_DIR!, '/tmp']) {
      const volume = volumes.get(mounts.get(path) ?? '');
      expect(volume?.emptyDir, `an emptyDir at ${path}`).toBeDefined();
      expect(volume!.emptyDir.sizeLimit, `${path} sizeLimit`).toBeDefined();
    }
  });

  it('requests the ephemeral storage its emptyDirs may fill', () => {
    const total = (podSpec.volumes as Obj[]).reduce((n, v) => n + quantity(v.emptyDir.sizeLimit), 0);
    expect(quantity(container.resources.limits['ephemeral-storage'])).toBeGreaterThanOrEqual(total);
    expect(quantity(container.resources.requests['ephemeral-storage'])).toBeGreaterThanOrEqual(total);
  });
});

describe("the runner's environment", () => {
  it('sets every designed variable (pod env, ConfigMap or image ENV)', () => {
    expect(DESIGNED_ENV.filter((n) => !setInPod.has(n))).toEqual([]);
  });

  it('sets or documents (infra/README.md) every variable the runner source reads', () => {
    const readme = readFileSync(join(INFRA, 'README.md'), 'utf8');
    const unaccounted = runnerReads().filter((n) => !setInPod.has(n) && !readme.includes(`\`${n}\``));
    expect(unaccounted).toEqual([]);
  });

  it('sets no LORA_EDGE_ variable that nothing reads (typos)', () => {
    const known = new Set([...DESIGNED_ENV, ...runnerReads()]);
    const set = [...new Set([...envNames, ...Object.keys(config)])].filter((n) => n.startsWith('LORA_EDGE_'));
    expect(set.filter((n) => !known.has(n))).toEqual([]);
  });

  it('defines each variable once: no name both in env and in the ConfigMap, none twice in env', () => {
    expect(new Set(envNames).size).toBe(envNames.length);
    expect(envNames.filter((n) => n in config)).toEqual([]);
    expect((container.envFrom as Obj[]).map((e) => e.configMapRef?.name)).toEqual([configMap.metadata.name]);
  });

  it('takes the token and the S3 credentials from the Secret, never from plain values', () => {
    for (const name of SECRET_ENV) {
      const e = env.find((x) => x.name === name);
      expect(e?.value, name).toBeUndefined();
      expect(e?.valueFrom?.secretKeyRef, name).toEqual({ name: secretExample.metadata.name, key: name });
      expect(config[name], `${name} in the ConfigMap`).toBeUndefined();
    }
    expect(Object.keys(config).filter((k) => /TOKEN|SECRET|PASSWORD|ACCESS_KEY/.test(k))).toEqual([]);
  });

  it('names the pod (downward API) as runner id and its IP and port as the advertised URL', () => {
    const field = (n: string) => env.find((e) => e.name === n)?.valueFrom?.fieldRef?.fieldPath;
    expect(field('POD_NAME')).toBe('metadata.name');
    expect(field('POD_IP')).toBe('status.podIP');
    expect(env.find((e) => e.name === 'LORA_EDGE_RUNNER_ID')?.value).toBe('$(POD_NAME)');
    expect(env.find((e) => e.name === 'LORA_EDGE_RUNNER_URL')?.value).toBe(`http://$(POD_IP):${containerPort.containerPort}`);
  });

  it('refers with $(VAR) only to variables defined earlier in env (else Kubernetes leaves the text as is)', () => {
    env.forEach((e, i) => {
      for (const m of String(e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
        expect(envNames.slice(0, i), `${e.name} refers to ${m[1]}`).toContain(m[1]);
    });
  });

  it('the ConfigMap holds valid values for the runner', () => {
    expect(config.LORA_EDGE_BACKEND).toBe('cuda');
    expect(config.LORA_EDGE_GATEWAY_URL).toMatch(/^https?:\/\/[^/]+$/);
    expect(config.LORA_EDGE_BLOBS).toMatch(/^(gateway|s3|dir:.+)$/);
    if (config.LORA_EDGE_BLOBS === 's3') {
      expect(config.LORA_EDGE_S3_ENDPOINT).toMatch(/^https:\/\//);
      expect(config.LORA_EDGE_S3_BUCKET).toMatch(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/);
    }
    const slots = Number(config.LORA_EDGE_SLOTS);
    expect(Number.isInteger(slots) && slots >= 1 && slots <= 4096).toBe(true);
  });

  it('the device memory budgets fit one 80 GB GPU with room for the CUDA context and scratch', () => {
    const sum = ['LORA_EDGE_KV_BYTES', 'LORA_EDGE_ADAPTER_BYTES', 'LORA_EDGE_MAX_MODEL_BYTES'].reduce(
      (n, k) => n + byteSize(config[k]!),
      0,
    );
    // An H100 80GB reports 81559 MiB; keep a tenth of it free.
    expect(sum).toBeLessThanOrEqual(0.9 * 81559 * 2 ** 20);
  });
});

describe('the Service', () => {
  it('is headless and selects the runner pods', () => {
    expect(service.spec.clusterIP).toBe('None');
    expect(isSubset(service.spec.selector, podLabels)).toBe(true);
  });

  it('exposes the container port', () => {
    expect(service.spec.ports).toHaveLength(1);
    const [port] = service.spec.ports;
    expect(port.port).toBe(containerPort.containerPort);
    expect(resolvePort(port.targetPort)).toBe(containerPort.containerPort);
  });
});

describe('the PodDisruptionBudget', () => {
  it('covers the runner pods and allows one disruption at a time (never blocks drains at one replica)', () => {
    expect(isSubset(pdb.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(pdb.spec.minAvailable).toBeUndefined();
  });
});

describe('autoscaling on queue depth (KEDA)', () => {
  const trigger: Obj = scaledObject.spec.triggers[0];

  it('scales the Deployment', () => {
    expect(scaledObject.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
  });

  it("polls the gateway's /runners/capacity for `outstanding`, one replica per LORA_EDGE_SLOTS jobs", () => {
    expect(scaledObject.spec.triggers).toHaveLength(1);
    expect(trigger.type).toBe('metrics-api');
    expect(trigger.metricType).toBe('AverageValue');
    expect(trigger.metadata.url).toBe(`${config.LORA_EDGE_GATEWAY_URL}/runners/capacity`);
    expect(trigger.metadata.valueLocation).toBe('outstanding');
    expect(trigger.metadata.targetValue).toBe(config.LORA_EDGE_SLOTS);
  });

  it('authenticates with the runner token as a bearer token, from the Secret', () => {
    expect(trigger.metadata.authMode).toBe('bearer');
    expect(trigger.authenticationRef.name).toBe(triggerAuth.metadata.name);
    expect(triggerAuth.spec.secretTargetRef).toEqual([
      { parameter: 'token', name: secretExample.metadata.name, key: 'LORA_EDGE_RUNNER_TOKEN' },
    ]);
  });

  it('has sane bounds: 0 <= min <= fallback <= max', () => {
    const { minReplicaCount: min, maxReplicaCount: max, fallback } = scaledObject.spec;
    expect(min).toBeGreaterThanOrEqual(0);
    expect(max).toBeGreaterThanOrEqual(Math.max(1, min));
    expect(fallback.replicas).toBeGreaterThanOrEqual(min);
    expect(fallback.replicas).toBeLessThanOrEqual(max);
  });

  it('scales down slower than the drain', () => {
    const down = scaledObject.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown;
    expect(down.stabilizationWindowSeconds * 1000).toBeGreaterThan(Number(config.LORA_EDGE_DRAIN_MS));
  });
});

describe('the Secret example', () => {
  it('is an example: placeholders only, not applied by the kustomization', () => {
    const doc = docs.find((d) => d.value?.kind === 'Secret')!;
    expect(doc.file).toMatch(/example/);
    expect(secretExample.data).toBeUndefined();
    for (const [k, v] of Object.entries(secretExample.stringData as Record<string, string>)) expect(v, k).toMatch(/^REPLACE_/);
  });

  it('has every key the Deployment and the TriggerAuthentication read', () => {
    const keys = Object.keys(secretExample.stringData);
    const wanted = [
      ...env.flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.key] : [])),
      ...triggerAuth.spec.secretTargetRef.map((r: Obj) => r.key),
    ];
    expect(wanted.filter((k) => !keys.includes(k))).toEqual([]);
  });
});
