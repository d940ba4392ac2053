export * from './retrieval.ts';
export * from './similarity.ts';
