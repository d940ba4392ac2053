export * from './config.ts';
export * from './weights.ts';
