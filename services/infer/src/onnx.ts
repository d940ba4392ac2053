// The ONNX builder and runtime glue live in shared/src/onnx (pure TypeScript).
export { onnx } from '@lora-edge/shared';
