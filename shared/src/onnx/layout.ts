import type { ModelConfig } from '../model/config.ts';
import { linearShape, type Projection, projectionModule } from '../model/weights.ts';

/**
 * Projections that read the same input are one matmul in the graph (q, k, v → qkv; gate, up →
 * gate_up): fewer nodes, and one LoRA shrink matmul serves every member of the group.
 */
export const GROUPS = {
  qkv_proj: ['q_proj', 'k_proj', 'v_proj'],
  o_proj: ['o_proj'],
  gate_up_proj: ['gate_proj', 'up_proj'],
  down_proj: ['down_proj'],
} as const satisfies Record<string, readonly Projection[]>;
export type GroupName = keyof typeof GROUPS;
export const GROUP_NAMES = Object.keys(GROUPS) as GroupName[];

export interface GroupMember {
  proj: Projection;
  /** Hugging Face module path, e.g. model.layers.0.self_attn.q_proj. */
  module: string;
  /** First row of this member in the group's packed [out, in] weight. */
  row: number;
  rows: number;
}

/** One packed projection group of one layer and the graph inputs that feed it. */
export interface GroupLayout {
  layer: number;
  group: GroupName;
  /** Graph-value prefix, e.g. model.layers.0.self_attn.qkv_proj. */
  prefix: string;
  out: number;
  in: number;
  members: GroupMember[];
  bias: boolean;
  names: {
    weight: string;
    bias: string;
    /** 4-bit weights: codes, scales (NF4: absmax), zero points (q4 only). */
    codes4: string;
    scales4: string;
    zeros4: string;
  };
}

function groupPrefix(layer: number, group: GroupName): string {
  return `model.layers.${layer}.${group === 'qkv_proj' || group === 'o_proj' ? 'self_attn' : 'mlp'}.${group}`;
}

function hasBias(config: ModelConfig, group: GroupName): boolean {
  if (group === 'qkv_proj') return config.qkvBias;
  if (group === 'o_proj') return config.oBias;
  return config.mlpBias;
}

export function groupLayout(config: ModelConfig, layer: number, group: GroupName): GroupLayout {
  const members: GroupMember[] = [];
  let row = 0;
  let inF = 0;
  for (const proj of GROUPS[group]) {
    const module = projectionModule(layer, proj);
    const [out, i] = linearShape(config, module) as [number, number];
    members.push({ proj, module, row, rows: out });
    row += out;
    inF = i;
  }
  const prefix = groupPrefix(layer, group);
  return {
    layer,
    group,
    prefix,
    out: row,
    in: inF,
    members,
    bias: hasBias(config, group),
    names: {
      weight: `${prefix}.weight`,
      bias: `${prefix}.bias`,
      codes4: `${prefix}.weight_4bit`,
      scales4: `${prefix}.weight_scales`,
      zeros4: `${prefix}.weight_zero_points`,
    },
  };
}

export function allGroups(config: ModelConfig): GroupLayout[] {
  const out: GroupLayout[] = [];
  for (let l = 0; l < config.numLayers; l++) for (const g of GROUP_NAMES) out.push(groupLayout(config, l, g));
  return out;
}

/** The group a module belongs to and its member entry, or undefined for modules outside the decoder layers. */
export function findMember(groups: readonly GroupLayout[], module: string): { group: GroupLayout; member: GroupMember } | undefined {
  for (const group of groups) {
    const member = group.members.find((m) => m.module === module);
    if (member) return { group, member };
  }
  return undefined;
}

/** Names of the KV-cache values of layer `l` (transformers.js / Optimum naming). */
export function kvNames(l: number): { pastKey: string; pastValue: string; presentKey: string; presentValue: string } {
  return {
    pastKey: `past_key_values.${l}.key`,
    pastValue: `past_key_values.${l}.value`,
    presentKey: `present.${l}.key`,
    presentValue: `present.${l}.value`,
  };
}
