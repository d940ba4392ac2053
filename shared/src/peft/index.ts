export * from './adapter.ts';
export * from './config.ts';
export * from './targets.ts';
