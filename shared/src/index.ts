export * from './errors.ts';
export * from './safetensors/index.ts';
export * from './tensor/index.ts';
