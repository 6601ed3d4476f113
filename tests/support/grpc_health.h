// grpc.health.v1.Health/Check for tests, with hand-encoded messages (Debian's grpc++ ships no generated
// health stub): request {1: service}, response {1: status}. Returns the status (SERVING = 1,
// NOT_SERVING = 2, 0 = UNKNOWN, sent as no field), -1 when the call failed (see *st), -2 for a response
// that is not a HealthCheckResponse.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>

#include <chrono>
#include <string>
#include <vector>

namespace dg::testing {

inline int grpc_health_check(grpc::ChannelInterface* channel, const std::string& service, grpc::Status* st,
                             std::chrono::seconds deadline = std::chrono::seconds(10)) {
    std::string req;
    if (!service.empty()) {
        req.push_back(0x0a);
        req.push_back(char(service.size()));
        req += service;
    }
    grpc::Slice slice(req);
    grpc::ByteBuffer in(&slice, 1), out;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    *st = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel, grpc::internal::RpcMethod("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC), &ctx,
        in, &out);
    if (!st->ok()) return -1;
    std::vector<grpc::Slice> slices;
    (void)out.Dump(&slices);
    std::string bytes;
    for (auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    if (bytes.size() == 2 && bytes[0] == 0x08) return bytes[1];
    return bytes.empty() ? 0 : -2;
}

}  // namespace dg::testing
