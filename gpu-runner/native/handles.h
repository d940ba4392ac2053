// Weight, LoRA and VeRA projection handles: Napi::External objects, type-tagged so a foreign object (or a handle
// of the other kind) is refused, freed by their finalizer at GC or earlier by `release`.
#pragma once
#include <napi.h>

#include "storage.h"

namespace le {

Napi::Value createWeight(const Napi::CallbackInfo& info);
Napi::Value createLora(const Napi::CallbackInfo& info);
// VeRA: the shared projections (once per key and rank), then per module a handle of λ scales.
Napi::Value createVeraProjection(const Napi::CallbackInfo& info);
Napi::Value createVera(const Napi::CallbackInfo& info);
// { layout: 'dense' | 'sparse' | 'vera', bytes } of a LoRA handle.
Napi::Value loraInfo(const Napi::CallbackInfo& info);
Napi::Value release(const Napi::CallbackInfo& info);

// The live native object behind a handle, or a thrown TypeError / Error.
const WeightNative& unwrapWeight(const Napi::Value& v, const char* what);
const LoraNative& unwrapLora(const Napi::Value& v, const char* what);

}  // namespace le
