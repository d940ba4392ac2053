// Weight and LoRA handles: Napi::External objects, type-tagged so a foreign object (or a handle
// of the other kind) is refused, freed by their finalizer at GC or earlier by `release`.
#pragma once
#include <napi.h>

#include "storage.h"

namespace le {

Napi::Value createWeight(const Napi::CallbackInfo& info);
Napi::Value createLora(const Napi::CallbackInfo& info);
Napi::Value release(const Napi::CallbackInfo& info);

// The live native object behind a handle, or a thrown TypeError / Error.
const WeightNative& unwrapWeight(const Napi::Value& v, const char* what);
const LoraNative& unwrapLora(const Napi::Value& v, const char* what);

}  // namespace le
