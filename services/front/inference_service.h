// deltagate.v1.Inference on the gRPC callback API: validation and planning here, streaming in
// generate_call.h.
#pragma once

#include <grpcpp/grpcpp.h>

#include "services/front/protos.h"
#include "deltagate/v1/inference.grpc.pb.h"
#include "services/front/front_state.h"

namespace dg::front {

class InferenceService final : public v1::Inference::CallbackService {
public:
    explicit InferenceService(FrontState& front) : front_(front) {}

    grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(grpc::CallbackServerContext* ctx,
                                                              const v1::GenerateRequest* req) override;
    grpc::ServerWriteReactor<v1::GenerateResponse>* BatchGenerate(grpc::CallbackServerContext* ctx,
                                                                   const v1::BatchGenerateRequest* req) override;
    grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx, const v1::TokenizeRequest* req,
                                       v1::TokenizeResponse* resp) override;
    grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx, const v1::DetokenizeRequest* req,
                                         v1::DetokenizeResponse* resp) override;
    grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx, const v1::ListModelsRequest* req,
                                         v1::ListModelsResponse* resp) override;
    grpc::ServerUnaryReactor* Abort(grpc::CallbackServerContext* ctx, const v1::AbortRequest* req,
                                    v1::AbortResponse* resp) override;

private:
    grpc::Status check_auth(grpc::CallbackServerContext* ctx) const;
    // What every streaming RPC checks before planning: the bearer token, the in-flight limit, the model.
    grpc::Status admit_stream(grpc::CallbackServerContext* ctx, const std::string& model_name, ModelFacts* model);
    grpc::ServerUnaryReactor* unary_done(grpc::CallbackServerContext* ctx, const char* rpc, const grpc::Status& s);

    FrontState& front_;
};

// absl::Status -> grpc::Status (same codes, same message).
grpc::Status to_grpc(const absl::Status& s);

}  // namespace dg::front
