/** Planning a merge (refusals happen here, synchronously) and handing jobs to the queue. */
import { FACTOR_METHODS } from '@lora-edge/shared';
import { registry } from '../http/auth.ts';
import { ApiError, toApiError } from '../http/errors.ts';
import { limits } from '../http/limits.ts';
import {
  type AdapterRecord,
  type BaseModelRecord,
  canonicalJson,
  canonicalRecipe,
  fusesExactSum,
  type Recipe,
  recipeKey,
  sha256Hex,
} from '../lib.ts';
import type { JobObject } from './job-object.ts';
import type { ImportPayload, JobKind, JobPayload, JobView, MergeInputRef, MergePayload, MergeRequest } from './types.ts';

export interface MergePlan {
  key: string;
  payload: MergePayload;
  /** Bytes of weights the job must hold: the adapters, plus the base for fused outputs. */
  estimateBytes: number;
}

type Promised<T> = { [K in keyof T]: T[K] extends (...a: infer A) => infer R ? (...a: A) => Promise<Awaited<R>> : never };

/** The job object's RPC surface (written out: the generated stub types recurse too deep through the payload types). */
export type JobStub = Promised<
  Pick<JobObject, 'submit' | 'adopt' | 'begin' | 'progress' | 'complete' | 'fail' | 'deadLetter' | 'abort' | 'read'>
>;

export function jobStub(env: Env, id: string): JobStub {
  return env.JOBS.get(env.JOBS.idFromName(id)) as unknown as JobStub;
}

/** Resolves names to digests and checks everything that can be checked without loading weights. */
export async function planMerge(env: Env, tenant: string, req: MergeRequest): Promise<MergePlan> {
  const reg = registry(env);
  const base: BaseModelRecord | undefined = await reg.getModel(req.base);
  if (!base) throw new ApiError(422, 'base_model_unknown', `base model "${req.base}" is not registered`, { field: 'base' });
  const exactSum = fusesExactSum(req);
  const exact = req.options.exact ?? false;
  const resolved: { rec: AdapterRecord; weight: number }[] = [];
  for (const [i, a] of req.adapters.entries()) {
    const field = `adapters.${i}.id`;
    const rec = await reg.resolveAdapter(tenant, a.id);
    if (!rec) throw new ApiError(422, 'adapter_unknown', `adapter "${a.id}" is not registered (or not shared with you)`, { field });
    if (rec.base !== base.id) {
      throw new ApiError(422, 'adapter_base_mismatch', `adapter ${rec.id} was validated against base "${rec.base}", not "${base.id}"`, {
        field,
      });
    }
    if (rec.use_dora && !exactSum) {
      throw new ApiError(422, 'adapter_unsupported', `${rec.id} is DoRA: it can only be fused alone or in a linear fused mix, not merged`, {
        field,
      });
    }
    if (rec.use_dora && a.weight !== 1) {
      throw new ApiError(422, 'adapter_weight_invalid', `${rec.id} is DoRA: PEFT defines no weighted DoRA merge, so its weight must be 1`, {
        field: `adapters.${i}.weight`,
      });
    }
    if (!exactSum && !exact && FACTOR_METHODS.includes(req.method) && rec.peft_type !== 'LORA') {
      throw new ApiError(
        422,
        'adapter_unsupported',
        `${req.method} combines LoRA factors; ${rec.id} is ${rec.peft_type} (use cat, an *_svd method or exact)`,
        {
          field,
        },
      );
    }
    resolved.push({ rec, weight: a.weight });
  }
  let recipe: Recipe;
  try {
    recipe = canonicalRecipe({
      base: base.digest,
      adapters: resolved.map((r) => ({ digest: r.rec.digest, weight: r.weight })),
      method: req.method,
      options: req.options,
      output: req.output,
    });
  } catch (e) {
    throw toApiError(e);
  }
  // The same order as the canonical recipe: the merge runs in it.
  resolved.sort((a, b) => (a.rec.digest < b.rec.digest ? -1 : a.rec.digest > b.rec.digest ? 1 : a.weight - b.weight));
  const adapters: MergeInputRef[] = resolved.map(({ rec, weight }) => ({
    id: rec.id,
    tenant: rec.tenant,
    name: rec.name,
    digest: rec.digest,
    weight: weight === 0 ? 0 : weight,
    peft_type: rec.peft_type,
    use_dora: rec.use_dora,
  }));
  const key = await recipeKey(recipe);
  const adapterBytes = resolved.reduce((s, r) => s + r.rec.files.weights.size, 0);
  const estimateBytes = adapterBytes + (req.output === 'adapter' ? 0 : base.size);
  const payload: MergePayload = {
    kind: 'merge',
    recipe_key: key,
    recipe,
    base: { id: base.id, digest: base.digest },
    adapters,
    method: req.method,
  };
  const tooBig = estimateBytes > limits(env).maxEdgeJobBytes;
  const placement = req.placement ?? 'auto';
  if (hasGpu(env) && (placement === 'gpu' || (placement === 'auto' && tooBig))) payload.gpu = { estimate_bytes: estimateBytes };
  return { key, estimateBytes, payload };
}

/** Whether this deployment has the GPU path (services/gpu bound as GPU). */
export const hasGpu = (env: Env): boolean => (env as unknown as { GPU?: unknown }).GPU !== undefined;

/** 422 `runner_required` when the job is beyond a Worker's memory and no GPU runner is to build it. */
export function assertEdgeSized(env: Env, plan: MergePlan): void {
  const limit = limits(env).maxEdgeJobBytes;
  if (plan.payload.kind === 'merge' && plan.payload.gpu) return;
  if (plan.estimateBytes > limit) {
    throw new ApiError(
      422,
      'runner_required',
      `this merge holds about ${plan.estimateBytes} bytes of weights, over the ${limit} a Worker job may hold: it belongs to the GPU runner`,
      { estimate_bytes: plan.estimateBytes, limit_bytes: limit, recipe: plan.key },
    );
  }
}

/** Import jobs are keyed by what they fetch and by the delivery that asked (the Hub: the commit). */
export async function importJobId(p: ImportPayload, delivery: string): Promise<string> {
  return sha256Hex(canonicalJson({ lora_edge_import: 1, tenant: p.tenant, name: p.name, source: p.source, delivery }));
}

/** Creates the job or joins the existing one; only the creating call enqueues. */
export async function submitJob(
  env: Env,
  id: string,
  kind: JobKind,
  payload: JobPayload,
  tenant: string,
): Promise<{ job: JobView; enqueued: boolean }> {
  const stub = jobStub(env, id);
  const { job, enqueue } = await stub.submit(id, kind, payload, tenant);
  if (enqueue) {
    try {
      await env.JOB_QUEUE.send({ job: id });
    } catch (e) {
      await stub.abort({
        code: 'enqueue_failed',
        message: `the job queue refused the job (${e instanceof Error ? e.message : String(e)})`,
      });
      throw new ApiError(503, 'enqueue_failed', 'the job queue is unavailable; try again', {}, true);
    }
  }
  return { job, enqueued: enqueue };
}
