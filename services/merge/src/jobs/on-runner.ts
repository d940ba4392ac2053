/**
 * A merge build on a GPU runner: handed to the GPU gateway (services/gpu) as a merge job; the
 * runner builds it with the same shared/builder code and writes the artifact to R2, manifest last.
 * This consumer invocation waits for the gateway's stream to end, so the merge job keeps its lease,
 * retries and dead-letter queue exactly as for a build in the Worker.
 */
import { ApiError } from '../http/errors.ts';
import type { Report } from '../lib.ts';
import { type gpu, type JobResult, type MergePayload, readArtifactManifest, SseParser } from '../lib.ts';

export async function buildOnRunner(env: Env, p: MergePayload, report: Report): Promise<JobResult> {
  const binding = (env as unknown as { GPU?: gpu.GpuBinding }).GPU;
  if (!binding) throw new ApiError(503, 'gpu_path_unavailable', 'this deployment has no GPU path for builds beyond a Worker', {}, true);
  await report(0.05, 'queued for a GPU runner');
  const r = await binding.submitMerge(
    { merge_job: p.recipe_key, recipe: p.recipe_key, params: p as unknown as Record<string, unknown>, bytes: p.gpu?.estimate_bytes ?? 0 },
    'lora-edge-merge',
  );
  if (!r.ok) throw new ApiError(503, r.error.code, `the GPU path refused the build: ${r.error.message}`, {}, true);
  await report(0.1, `building on a GPU runner (job ${r.job})`);
  const reader = r.body.getReader();
  const parser = new SseParser();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) throw new ApiError(502, 'gpu_job_failed', `GPU job ${r.job} ended without a result`, {}, true);
    for (const ev of parser.push(value)) {
      const data = JSON.parse(ev.data) as {
        done?: boolean;
        artifact?: JobResult;
        code?: string;
        message?: string;
        status?: number;
        fraction?: number;
        stage?: string;
      };
      if (ev.event === 'progress') {
        // The runner's own progress of the build, mapped into this job's 10%…95%.
        await report(0.1 + 0.85 * Math.min(1, Math.max(0, data.fraction ?? 0)), `on a GPU runner: ${data.stage ?? ''}`);
        continue;
      }
      if (ev.event === 'error') {
        // The runner's verdict: a bad job (4xx) fails for good; runner trouble may pass on another try.
        const status = data.status ?? 502;
        throw new ApiError(
          status >= 500 ? 502 : 422,
          data.code ?? 'gpu_job_failed',
          data.message ?? 'the GPU build failed',
          { gpu_job: r.job },
          status >= 500,
        );
      }
      if (data.done) {
        await reader.cancel().catch(() => {});
        // Trust but verify: the artifact is visible only once its manifest is in R2.
        if (!(await readArtifactManifest(env.BLOBS, p.recipe_key)))
          throw new ApiError(502, 'artifact_missing', `GPU job ${r.job} reported done but no manifest is in storage`, {}, true);
        return { ...(data.artifact ?? { artifact: p.recipe_key }), gpu_job: r.job };
      }
    }
  }
}
