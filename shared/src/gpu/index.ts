export * from './job.ts';
export * from './protocol.ts';
export * from './runners.ts';
