export * from './aliases.ts';
export * from './api-keys.ts';
export * from './crypto.ts';
export * from './recipe.ts';
export * from './registry.ts';
export * from './schemas.ts';
export * from './webhook-signature.ts';
