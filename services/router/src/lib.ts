// The domain the router builds on.
export * from '@lora-edge/shared';
