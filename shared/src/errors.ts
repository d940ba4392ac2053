/**
 * One error type for every refusal in the domain: a machine-readable `code`, the place it
 * concerns (`file`, `tensor`, `field`) and a sentence a person understands. Services map
 * codes to HTTP statuses; the CLI maps them to exit code 2.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'safetensors_truncated'
  | 'safetensors_header_too_large'
  | 'safetensors_header_invalid'
  | 'safetensors_unknown_dtype'
  | 'safetensors_bad_shape'
  | 'safetensors_bad_offsets'
  | 'safetensors_overlap'
  | 'safetensors_tensor_missing'
  | 'invalid_json'
  | 'config_invalid'
  | 'config_unsupported'
  | 'model_weights_invalid'
  | 'adapter_config_invalid'
  | 'adapter_unsupported'
  | 'adapter_key_invalid'
  | 'adapter_shape_mismatch'
  | 'adapter_base_mismatch'
  | 'adapter_weight_invalid'
  | 'sharded_index_invalid'
  | 'non_finite_value'
  | 'nf4_invalid'
  | 'merge_invalid'
  | 'registry_invalid'
  | 'storage_invalid'
  | 'input_missing';

export interface ErrorPlace {
  file?: string;
  tensor?: string;
  field?: string;
}

export class LoraEdgeError extends Error {
  readonly code: ErrorCode;
  readonly file?: string;
  readonly tensor?: string;
  readonly field?: string;

  constructor(code: ErrorCode, message: string, place: ErrorPlace = {}) {
    super(prefix(place) + message);
    this.name = 'LoraEdgeError';
    this.code = code;
    if (place.file !== undefined) this.file = place.file;
    if (place.tensor !== undefined) this.tensor = place.tensor;
    if (place.field !== undefined) this.field = place.field;
  }

  /** The same error, told where it happened (a parser rarely knows its file name). */
  at(place: ErrorPlace): LoraEdgeError {
    const merged: ErrorPlace = {
      file: place.file ?? this.file,
      tensor: this.tensor ?? place.tensor,
      field: this.field ?? place.field,
    };
    return new LoraEdgeError(this.code, this.message.slice(prefix(this).length), merged);
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, file: this.file, tensor: this.tensor, field: this.field };
  }
}

function prefix(place: ErrorPlace): string {
  const parts: string[] = [];
  if (place.file) parts.push(place.file);
  if (place.tensor) parts.push(`tensor "${place.tensor}"`);
  if (place.field) parts.push(`field "${place.field}"`);
  return parts.length ? `${parts.join(', ')}: ` : '';
}

/** Re-throws a LoraEdgeError with its place filled in; anything else passes unchanged. */
export function withPlace<T>(place: ErrorPlace, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof LoraEdgeError) throw e.at(place);
    throw e;
  }
}

export function isLoraEdgeError(e: unknown): e is LoraEdgeError {
  return e instanceof LoraEdgeError;
}
