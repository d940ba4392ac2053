/** An import job (webhooks): fetch → validate → register, then submit the merges it carries. */
import { fetchAdapterFiles } from '../adapters/fetch.ts';
import { registerAdapter } from '../adapters/ingest.ts';
import { registry } from '../http/auth.ts';
import { toApiError } from '../http/errors.ts';
import { limits } from '../http/limits.ts';
import type { Report } from '../lib.ts';
import { assertEdgeSized, planMerge, submitJob } from './submit.ts';
import type { ImportPayload, JobResult, Json } from './types.ts';

export async function runImport(env: Env, p: ImportPayload, report: Report): Promise<JobResult> {
  await report(0.05, 'fetching the adapter');
  const { configBytes, weights } = await fetchAdapterFiles(p.dir, limits(env).maxAdapterBytes, env.HF_TOKEN);
  await report(0.5, 'validating');
  const reg = registry(env);
  const { adapter, changed } = await registerAdapter(env.BLOBS, reg, {
    tenant: p.tenant,
    name: p.name,
    base: p.base,
    configBytes,
    weights,
    visibility: p.visibility,
    examples: p.examples,
    source: p.source,
    watch: p.watch,
  });
  if (p.watch && p.source.kind === 'hf') {
    const w = { repo: p.source.repo, tenant: p.tenant, name: p.name };
    await reg.putWatch(p.source.subfolder ? { ...w, subfolder: p.source.subfolder } : w);
  }
  await report(0.8, 'submitting merges');
  const followups: { [key: string]: Json }[] = [];
  for (const m of p.merges ?? []) {
    try {
      const plan = await planMerge(env, p.tenant, m);
      assertEdgeSized(env, plan);
      const { job } = await submitJob(env, plan.key, 'merge', plan.payload, p.tenant);
      followups.push({ job: job.id, recipe: plan.key, state: job.state });
    } catch (e) {
      followups.push({ error: toApiError(e).toJSON() });
    }
  }
  return { adapter: adapter.id, digest: adapter.digest, changed, followups };
}
