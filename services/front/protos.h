// Short names for the generated proto namespaces inside dg::front.
#pragma once

#include "deltagate/v1/inference.pb.h"
#include "deltagate/worker/v1/worker.pb.h"

namespace dg::front {
namespace v1 = ::deltagate::v1;
namespace worker = ::deltagate::worker;
}  // namespace dg::front
