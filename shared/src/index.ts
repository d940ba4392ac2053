export * from './errors.ts';
export * from './json.ts';
export * from './llama/index.ts';
export * from './lora/index.ts';
export * from './model/index.ts';
export * from './peft/index.ts';
export * from './safetensors/index.ts';
export * from './tensor/index.ts';
