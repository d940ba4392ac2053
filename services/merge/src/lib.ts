/**
 * The registry and storage modules of @lora-edge/shared, imported by path until
 * shared/src/index.ts re-exports them; then this file becomes `export * from '@lora-edge/shared'`.
 */
export * from '../../../shared/src/registry/index.ts';
export * from '../../../shared/src/storage/index.ts';
