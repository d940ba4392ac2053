// The domain the merge service builds on.
export * from '@lora-edge/shared';
