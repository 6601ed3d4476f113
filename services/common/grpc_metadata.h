// One client metadata value of a server call ("" when absent), for every service (front and worker).
#pragma once

#include <string>

#include <grpcpp/grpcpp.h>

namespace dg {

inline std::string client_metadata(const grpc::CallbackServerContext* ctx, const std::string& key) {
    const auto& md = ctx->client_metadata();
    auto it = md.find(key);
    return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

}  // namespace dg
