// The one mapping of a status to what each encoding reports: absl::StatusCode and grpc::StatusCode share
// their numbers (absl -> gRPC keeps the code), and HTTP gets the status code grpc-gateway and Google APIs
// use for each, plus the OpenAI error `type` clients branch on. Metrics spell codes by status_code_name.
#pragma once

namespace dg {

// gRPC/absl code (0..16) -> its canonical name (OK, INVALID_ARGUMENT, ...), as metrics and spans spell it.
const char* status_code_name(int code);
// gRPC/absl code -> HTTP status (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, RESOURCE_EXHAUSTED 429, ...).
int http_status_for(int code);
// HTTP status -> OpenAI error type (invalid_request_error, authentication_error, rate_limit_error, ...).
const char* openai_error_type(int http_status);
// HTTP status -> Anthropic error type (invalid_request_error, authentication_error, overloaded_error, ...).
const char* anthropic_error_type(int http_status);

}  // namespace dg
