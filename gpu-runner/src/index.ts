export * from './backend/types.ts';
export * from './engine/cache.ts';
export * from './engine/engine.ts';
export * from './engine/mix.ts';
export * from './engine/model.ts';
export * from './engine/sampling.ts';
export * from './io/files.ts';
