// The shared bearer token between fronts and workers (docs/reliability.md "Worker authentication"):
// read from a file (a mounted Kubernetes Secret), checked by the worker on every call, attached by every
// worker client to every call through its channel.
//
//     DG_ASSIGN_OR_RETURN(std::string token, auth::token_from_file_or_env(flag, "--auth-token-file"));
//     auto channel = auth::channel_with_token(target, grpc::InsecureChannelCredentials(), args, token);
//     grpc::Status s = auth::check_bearer(*ctx, token);   // server side
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace dg::auth {

// The environment variable both `deltagate worker` and `deltagate front` read when no flag is given.
inline constexpr const char* kWorkerTokenFileEnv = "DELTAGATE_WORKER_TOKEN_FILE";

// Equal strings, in a time that depends only on `expected`'s length: how much of a guess matched
// must not show in how long the answer takes.
bool constant_time_equal(std::string_view got, std::string_view expected);

// The token a file holds: surrounding whitespace trimmed (`echo token > file` and Secrets created from
// such files end in a newline). Errors name the file: unreadable, empty, or holding characters a
// bearer token cannot have (RFC 6750 token68: letters, digits, - . _ ~ + / =).
absl::StatusOr<std::string> read_token_file(const std::string& path);

// `flag_value` (the file named by `flag_name`), else the file named by $DELTAGATE_WORKER_TOKEN_FILE,
// else "" (no token configured).
absl::StatusOr<std::string> token_from_file_or_env(const std::optional<std::string>& flag_value,
                                                   const char* flag_name);

// Server side: OK when `token` is empty (open) or the call's metadata is "authorization: Bearer <token>";
// UNAUTHENTICATED with a message that says what was wrong (missing, not a bearer token, or wrong) and
// which flags configure it.
grpc::Status check_bearer(const grpc::ServerContextBase& ctx, const std::string& token);

// Client side: a channel whose every call (unary and streaming, sync and callback) carries
// "authorization: Bearer <token>"; a plain channel when `token` is empty.
std::shared_ptr<grpc::Channel> channel_with_token(const std::string& target,
                                                  const std::shared_ptr<grpc::ChannelCredentials>& creds,
                                                  const grpc::ChannelArguments& args, const std::string& token);

}  // namespace dg::auth
