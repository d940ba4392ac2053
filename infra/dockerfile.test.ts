/**
 * Offline checks of the GPU runner's image (gpu-runner/Dockerfile): no docker engine, no hadolint.
 *
 * 1. dockerfile-utils (the validator behind VS Code's Docker language server) reports nothing.
 * 2. hadolint-style rules, by hand on dockerfile-ast's parse: pinned bases, a numeric non-root USER,
 *    HEALTHCHECK, COPY --from named stages only, no ADD, apt lists removed, pipefail, npm ci.
 * 3. The image against the rest of the repository: the build context (Dockerfile.dockerignore)
 *    holds what the COPYs and binding.gyp need, the entrypoint is the runner's script, the uid and
 *    port are the Deployment's.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Copy, Env, Healthcheck, Instruction } from 'dockerfile-ast';
import { validate } from 'dockerfile-utils';
import { describe, expect, it } from 'vitest';
import { DOCKERFILE, globalArgs, loadDocs, type Obj, only, parseDockerfile, ROOT, readRepoFile, type Stage, stages } from './manifests.ts';

const content = readRepoFile(DOCKERFILE);
const df = parseDockerfile(content);
const all = stages(df);
const final = all.at(-1)!;
const build = all.find((s) => s.name === 'build')!;
const args = globalArgs(df);

const deployment = only(loadDocs(), 'Deployment', 'lora-edge-runner');
const podSpec: Obj = deployment.spec.template.spec;
const runnerPkg = JSON.parse(readRepoFile('gpu-runner/package.json')) as {
  scripts?: Record<string, string>;
  dependencies?: Record<string, string>;
};

const kw = (s: Stage, keyword: string) => s.instructions.filter((i) => i.getKeyword() === keyword);
/** A RUN's shell text with line continuations joined. */
const shell = (i: Instruction) => (i.getRawArgumentsContent() ?? '').replace(/\\\r?\n/g, ' ').replace(/\s+/g, ' ');
const runs = (s: Stage) => kw(s, 'RUN').map(shell);
const allRuns = all.flatMap(runs);
/** An exec-form (JSON array) argument list, or null for the shell form. */
function execForm(text: string): string[] | null {
  try {
    const v = JSON.parse(text.trim());
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : null;
  } catch {
    return null;
  }
}
const jsonArgs = (i: Instruction) => execForm(i.getRawArgumentsContent() ?? '');
const copySources = (c: Copy) => {
  const a = c.getArguments().map((x) => x.getValue());
  return a.slice(0, -1);
};

describe('dockerfile-utils', () => {
  it('reports no diagnostics', () => {
    const diagnostics = validate(content).map((d) => `${d.range.start.line + 1}: ${d.message}`);
    expect(diagnostics).toEqual([]);
  });

  it('reports a broken Dockerfile (the validator is live)', () => {
    expect(validate('FROM node:20 AS a\nCOPY --from=a\nEXPOSE x\nFROM\n').length).toBeGreaterThan(0);
  });
});

describe('base images and stages', () => {
  it('has the stages node → build → runtime, named', () => {
    expect(all.map((s) => s.name)).toEqual(['node', 'build', 'runtime']);
  });

  it.each(all.map((s) => [s.name, s] as const))('%s: the base image is pinned by a version tag (never latest)', (_, s) => {
    expect(s.image).not.toMatch(/\$/);
    const tag = s.from.getImageTag() === null ? null : s.image.slice(s.image.lastIndexOf(':') + 1).replace(/@.*/, '');
    expect(tag, s.image).not.toBeNull();
    expect(tag).not.toBe('latest');
    expect(tag).toMatch(/^\d+\.\d+\.\d+-/);
  });

  it('builds on a CUDA 12 devel image and runs on the same version of the base or runtime image', () => {
    const m = /^nvidia\/cuda:(12\.\d+\.\d+)-devel-ubuntu(\d+\.\d+)$/.exec(build.image);
    expect(m, build.image).not.toBeNull();
    expect(final.image).toMatch(
      new RegExp(`^nvidia/cuda:${m![1]!.replace(/\./g, '\\.')}-(base|runtime)-ubuntu${m![2]!.replace('.', '\\.')}$`),
    );
  });

  it('uses Node 20 within the root engines range, from the official image', () => {
    expect(args.NODE_VERSION).toMatch(/^20\.\d+\.\d+$/);
    expect(Number(args.NODE_VERSION!.split('.')[1])).toBeGreaterThanOrEqual(10);
    expect(all[0]!.image).toBe(`node:${args.NODE_VERSION}-bookworm-slim`);
  });

  it('COPY --from names only earlier stages (no indexes, no outside images)', () => {
    all.forEach((s, n) => {
      const earlier = all.slice(0, n).map((x) => x.name);
      for (const c of kw(s, 'COPY') as Copy[]) {
        const from = c.getFromFlag()?.getValue();
        if (from !== undefined && from !== null) expect(earlier, `COPY --from=${from} in ${s.name}`).toContain(from);
      }
    });
  });

  it('has no ADD (COPY for local files; nothing fetched by URL)', () => {
    expect(all.flatMap((s) => kw(s, 'ADD'))).toEqual([]);
  });

  it('uses absolute WORKDIRs and no cd in RUN', () => {
    for (const s of all) for (const w of kw(s, 'WORKDIR')) expect(w.getRawArgumentsContent()).toMatch(/^\//);
    for (const r of allRuns) expect(r).not.toMatch(/(^|[;&|]\s*)cd\s/);
  });

  it('sets pipefail before any RUN with a pipe', () => {
    for (const s of all) {
      let pipefail = false;
      for (const i of s.instructions) {
        if (i.getKeyword() === 'SHELL') pipefail = /pipefail/.test(i.getRawArgumentsContent() ?? '');
        if (i.getKeyword() === 'RUN' && /[^|]\|[^|]/.test(shell(i))) expect(pipefail, `${s.name}: ${shell(i).slice(0, 60)}`).toBe(true);
      }
    }
  });
});

describe('packages', () => {
  it('apt: update and install in one RUN, no recommends, lists removed; no upgrade', () => {
    const apt = allRuns.filter((r) => /apt-get install/.test(r));
    expect(apt.length).toBeGreaterThan(0);
    for (const r of apt) {
      expect(r).toMatch(/apt-get update/);
      expect(r).toMatch(/apt-get install -y --no-install-recommends /);
      expect(r).toMatch(/rm -rf \/var\/lib\/apt\/lists\/\*\s*$/);
    }
    for (const r of allRuns) expect(r).not.toMatch(/apt-get (dist-)?upgrade|\bapt install|\bsudo\b/);
  });

  it('installs the dependencies with npm ci; npm install only for a pinned global tool', () => {
    const installs = allRuns.flatMap((r) => [...r.matchAll(/npm (?:install|i) ([^&;]*)/g)].map((m) => m[1]!));
    for (const a of installs) {
      expect(a).toMatch(/--global/);
      for (const spec of a.split(' ').filter((x) => x && !x.startsWith('-')))
        expect(substituteArgs(spec)).toMatch(/^"?[@a-z0-9/._-]+@\d+\.\d+\.\d+"?$/);
    }
    expect(allRuns.some((r) => /npm ci /.test(r))).toBe(true);
  });

  it("npm ci installs only the runner's closure: workspaces shared + gpu-runner, production only", () => {
    const ci = runs(build).find((r) => /npm ci /.test(r))!;
    const workspaces = [...ci.matchAll(/--workspace[= ](\S+)/g)].map((m) => m[1]);
    expect(workspaces.sort()).toEqual(['gpu-runner', 'shared']);
    expect(ci).toMatch(/--omit=dev/);
    expect(ci).not.toMatch(/--include-workspace-root/);
  });

  it('copies the manifests before npm ci and the sources after it (layer caching)', () => {
    const order = build.instructions.map((i) =>
      i.getKeyword() === 'COPY' ? `COPY ${copySources(i as Copy).join(' ')}` : `${i.getKeyword()} ${shell(i)}`,
    );
    const ci = order.findIndex((x) => /^RUN .*npm ci /.test(x));
    for (const m of ['package-lock.json', 'shared/package.json', 'gpu-runner/package.json'])
      expect(order.findIndex((x) => x.startsWith('COPY') && x.includes(m))).toBeLessThan(ci);
    for (const src of ['gpu-runner/native', 'gpu-runner/src', 'shared/src'])
      expect(order.findIndex((x) => x.startsWith('COPY') && x.includes(src))).toBeGreaterThan(ci);
  });

  it('builds the addons with LORA_EDGE_REQUIRE_CUDA=1 and LORA_EDGE_REQUIRE_NATIVE=1, and checks the result', () => {
    let env: Record<string, string> = {};
    let checked = false;
    for (const i of build.instructions) {
      if (i.getKeyword() === 'ENV') for (const p of (i as Env).getProperties()) env = { ...env, [p.getName()]: p.getValue() ?? '' };
      if (i.getKeyword() === 'RUN' && /npm rebuild|build-native/.test(shell(i))) {
        expect(env.LORA_EDGE_REQUIRE_CUDA).toBe('1');
        expect(env.LORA_EDGE_REQUIRE_NATIVE).toBe('1');
        expect(env.LORA_EDGE_CUDA ?? '1').not.toBe('0');
        const r = shell(i);
        expect(r).toMatch(/--strict-allow-scripts/);
        expect(r).toMatch(/lora_edge_cuda\.node/);
        expect(r).toMatch(/libcudart/);
        expect(r).toMatch(/sm_80/);
        expect(r).toMatch(/sm_90/);
        checked = true;
      }
    }
    expect(checked).toBe(true);
  });
});

/** ${NAME} from the global ARG defaults (for the pinned-version checks). */
function substituteArgs(s: string): string {
  return s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (all, n) => args[n] ?? all);
}

describe('the runtime stage', () => {
  it('runs as a numeric non-root uid:gid, the Deployment’s runAsUser/runAsGroup', () => {
    const users = kw(final, 'USER');
    expect(users.length).toBeGreaterThan(0);
    const m = /^(\d+):(\d+)$/.exec(users.at(-1)!.getRawArgumentsContent() ?? '');
    expect(m, 'USER uid:gid, numeric (runAsNonRoot can only check a numeric user)').not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![1])).toBe(podSpec.securityContext.runAsUser);
    expect(Number(m![2])).toBe(podSpec.securityContext.runAsGroup);
  });

  it('has a HEALTHCHECK on /healthz with node (no curl in the image)', () => {
    const hc = kw(final, 'HEALTHCHECK') as Healthcheck[];
    expect(hc).toHaveLength(1);
    expect(hc[0]!.getSubcommand()?.getValue()).toBe('CMD');
    const raw = hc[0]!.getRawArgumentsContent()!.replace(/\\\r?\n/g, ' ');
    const cmd = execForm(raw.slice(raw.indexOf('CMD') + 3));
    expect(cmd?.slice(0, 2)).toEqual(['node', '-e']);
    expect(cmd![2]).toMatch(/\/healthz/);
    expect(cmd![2]).toMatch(/LORA_EDGE_RUNNER_PORT/);
    expect(raw).not.toMatch(/curl|wget/);
  });

  it('exposes the Deployment’s container port, stops with SIGTERM, selects the cuda backend', () => {
    const port = (podSpec.containers[0].ports as Obj[]).find((p) => p.name === 'http')!.containerPort;
    expect(kw(final, 'EXPOSE').map((e) => e.getRawArgumentsContent())).toEqual([String(port)]);
    expect(kw(final, 'STOPSIGNAL').map((e) => e.getRawArgumentsContent())).toEqual(['SIGTERM']);
    const env = Object.fromEntries(kw(final, 'ENV').flatMap((i) => (i as Env).getProperties().map((p) => [p.getName(), p.getValue()])));
    expect(env.LORA_EDGE_BACKEND).toBe('cuda');
    expect(env.LORA_EDGE_RUNNER_PORT).toBe(String(port));
    expect(env.NODE_ENV).toBe('production');
  });

  it('starts the runner with node --import tsx (exec form, node as PID 1), as the runner script does', () => {
    const entry = kw(final, 'ENTRYPOINT');
    expect(entry).toHaveLength(1);
    const argv = jsonArgs(entry[0]!);
    expect(argv?.slice(0, 3)).toEqual(['node', '--import', 'tsx']);
    expect(kw(final, 'CMD')).toEqual([]);
    const workdir = kw(final, 'WORKDIR').at(-1)!.getRawArgumentsContent();
    expect(workdir).toBe('/app/gpu-runner');
    const script = runnerPkg.scripts?.runner;
    if (script !== undefined) expect(script).toBe(`tsx ${argv![3]}`);
    expect(existsSync(join(ROOT, 'gpu-runner', argv![3]!)) || script === undefined).toBe(true);
  });

  it.skipIf(!runnerPkg.dependencies?.tsx)('tsx is a production dependency of gpu-runner (skipped until gpu-runner declares it)', () => {
    expect(runnerPkg.dependencies?.tsx).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('copies from the build stage only the built modules, sources and production node_modules', () => {
    const froms = (kw(final, 'COPY') as Copy[]).filter((c) => c.getFromFlag()?.getValue() === 'build').flatMap(copySources);
    expect(froms.filter((p) => p.includes('/build/'))).toEqual([
      '/app/gpu-runner/build/Release/lora_edge_native.node',
      '/app/gpu-runner/build/Release/lora_edge_cuda.node',
    ]);
    expect(froms).not.toContain('/app');
    expect(froms).not.toContain('/app/gpu-runner');
    expect(froms.filter((p) => /\/native(\/|$)|binding\.gyp|\/scripts(\/|$)/.test(p))).toEqual([]);
    expect(runs(final).filter((r) => /apt-get|npm /.test(r))).toEqual([]);
  });
});

// ---- the build context ----

/** A .dockerignore pattern as a regular expression over a slash-separated path. */
function patternRe(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      const slash = pattern[i + 2] === '/';
      re += slash ? '(?:.*/)?' : '.*';
      i += slash ? 2 : 1;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Docker's rule: the last pattern matching the path or one of its parent directories decides. */
function makeIgnore(text: string) {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const p = (negate ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      return { negate, re: patternRe(p) };
    });
  return (path: string): boolean => {
    const parts = path.split('/');
    const prefixes = parts.map((_, n) => parts.slice(0, n + 1).join('/'));
    let excluded = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate;
    return !excluded;
  };
}

const ignoreFile = `${DOCKERFILE}.dockerignore`;
const included = makeIgnore(existsSync(join(ROOT, ignoreFile)) ? readRepoFile(ignoreFile) : '');

function filesUnder(rel: string): string[] {
  const abs = join(ROOT, rel);
  if (!statSync(abs).isDirectory()) return [rel];
  return readdirSync(abs).flatMap((e) => (e === 'node_modules' || e === 'build' ? [] : filesUnder(`${rel}/${e}`)));
}

describe('the build context (gpu-runner/Dockerfile.dockerignore)', () => {
  const local = all.flatMap((s) => (kw(s, 'COPY') as Copy[]).filter((c) => !c.getFromFlag()).flatMap(copySources));

  it('exists beside the Dockerfile, named after it (BuildKit applies it to this build only)', () => {
    expect(existsSync(join(ROOT, ignoreFile))).toBe(true);
  });

  it('every COPY source exists in the repository and is in the context', () => {
    expect(local.length).toBeGreaterThan(0);
    for (const src of local) {
      expect(existsSync(join(ROOT, src)), src).toBe(true);
      expect(included(src), src).toBe(true);
    }
  });

  it('every file binding.gyp names is in the context', () => {
    const gyp = readRepoFile('gpu-runner/binding.gyp');
    const files = [...new Set([...gyp.matchAll(/'(native\/[^' ]+)'/g)].map((m) => `gpu-runner/${m[1]}`))];
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      expect(existsSync(join(ROOT, f)), f).toBe(true);
      expect(included(f), f).toBe(true);
    }
  });

  it('every source file of shared and gpu-runner (but tests) is in the context', () => {
    for (const dir of ['shared/src', 'gpu-runner/src'])
      for (const f of filesUnder(dir)) expect(included(f), f).toBe(!f.endsWith('.test.ts'));
  });

  it('leaves out host builds, node_modules, tests, the emulator, other packages and the repository', () => {
    for (const p of [
      'node_modules/yaml/package.json',
      'gpu-runner/node_modules/x/index.js',
      'gpu-runner/build/Release/lora_edge_cuda.node',
      'shared/src/gpu/gpu.test.ts',
      'gpu-runner/native/cuda/emu/build.mjs',
      'services/router/src/index.ts',
      'cli/package.json',
      'fixtures/x',
      '.git/HEAD',
      'infra/k8s/runner-deployment.yaml',
      'gpu-runner/Dockerfile',
    ])
      expect(included(p), p).toBe(false);
  });
});
