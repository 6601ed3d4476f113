#include "services/common/bearer_token.h"

#include <grpcpp/support/client_interceptor.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace dg::auth {
namespace {

bool token68_char(char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~' ||
           c == '+' || c == '/' || c == '=';
}

// Adds the metadata before the call's headers go out; one per call, owned by gRPC.
class BearerInterceptor final : public grpc::experimental::Interceptor {
public:
    explicit BearerInterceptor(std::string value) : value_(std::move(value)) {}
    void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
        if (m->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA))
            m->GetSendInitialMetadata()->insert({"authorization", value_});
        m->Proceed();
    }

private:
    const std::string value_;  // a copy: a call may outlive the stub that started it
};

class BearerInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
public:
    explicit BearerInterceptorFactory(const std::string& token) : value_("Bearer " + token) {}
    grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
        return new BearerInterceptor(value_);
    }

private:
    const std::string value_;
};

}  // namespace

bool constant_time_equal(std::string_view got, std::string_view expected) {
    unsigned diff = got.size() != expected.size();
    for (size_t i = 0; i < expected.size(); ++i)
        diff |= unsigned(static_cast<unsigned char>(expected[i]) ^
                         static_cast<unsigned char>(i < got.size() ? got[i] : 0));
    return diff == 0;
}

absl::StatusOr<std::string> read_token_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file '", path, "'"));
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string token(absl::StripAsciiWhitespace(ss.str()));
    if (token.empty()) return absl::InvalidArgumentError(absl::StrCat("the token file '", path, "' is empty"));
    for (char c : token)
        if (!token68_char(c))
            return absl::InvalidArgumentError(absl::StrCat(
                "the token file '", path,
                "' holds a character a bearer token cannot have (use letters, digits and - . _ ~ + / =, "
                "e.g. `openssl rand -hex 32`)"));
    return token;
}

absl::StatusOr<std::string> token_from_file_or_env(const std::optional<std::string>& flag_value,
                                                   const char* flag_name) {
    if (flag_value) {
        auto t = read_token_file(*flag_value);
        if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(flag_name, ": ", t.status().message()));
        return t;
    }
    const char* env = std::getenv(kWorkerTokenFileEnv);
    if (!env || !*env) return std::string();
    auto t = read_token_file(env);
    if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(kWorkerTokenFileEnv, ": ", t.status().message()));
    return t;
}

grpc::Status check_bearer(const grpc::ServerContextBase& ctx, const std::string& token) {
    if (token.empty()) return grpc::Status::OK;
    const auto& md = ctx.client_metadata();
    auto it = md.find("authorization");
    if (it == md.end())
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "this worker accepts only fronts: send the shared token as metadata "
                            "'authorization: Bearer <token>' (deltagate front --worker-token-file)");
    const absl::string_view got(it->second.data(), it->second.size());  // absl's: Debian's absl is not std's
    constexpr absl::string_view kScheme = "bearer ";
    if (got.size() <= kScheme.size() || !absl::EqualsIgnoreCase(got.substr(0, kScheme.size()), kScheme))
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "the 'authorization' metadata is not 'Bearer <token>'");
    const absl::string_view presented = absl::StripLeadingAsciiWhitespace(got.substr(kScheme.size()));
    if (!constant_time_equal(std::string_view(presented.data(), presented.size()), token))
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                            "the bearer token does not match this worker's: the front's --worker-token-file and "
                            "the worker's --auth-token-file must hold the same secret");
    return grpc::Status::OK;
}

std::shared_ptr<grpc::Channel> channel_with_token(const std::string& target,
                                                  const std::shared_ptr<grpc::ChannelCredentials>& creds,
                                                  const grpc::ChannelArguments& args, const std::string& token) {
    if (token.empty()) return grpc::CreateCustomChannel(target, creds, args);
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
    factories.push_back(std::make_unique<BearerInterceptorFactory>(token));
    return grpc::experimental::CreateCustomChannelWithInterceptors(target, creds, args, std::move(factories));
}

}  // namespace dg::auth
