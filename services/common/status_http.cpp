#include "services/common/status_http.h"

namespace dg {

const char* status_code_name(int code) {
    static const char* names[] = {"OK",        "CANCELLED",        "UNKNOWN",           "INVALID_ARGUMENT",
                                  "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED",
                                  "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                                  "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",       "DATA_LOSS",
                                  "UNAUTHENTICATED"};
    return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

int http_status_for(int code) {
    switch (code) {
    case 0: return 200;
    case 1: return 499;   // CANCELLED: the client closed the request
    case 3: return 400;   // INVALID_ARGUMENT
    case 4: return 504;   // DEADLINE_EXCEEDED
    case 5: return 404;   // NOT_FOUND
    case 6: return 409;   // ALREADY_EXISTS
    case 7: return 403;   // PERMISSION_DENIED
    case 8: return 429;   // RESOURCE_EXHAUSTED
    case 9: return 400;   // FAILED_PRECONDITION
    case 10: return 409;  // ABORTED
    case 11: return 400;  // OUT_OF_RANGE
    case 12: return 501;  // UNIMPLEMENTED
    case 14: return 503;  // UNAVAILABLE
    case 16: return 401;  // UNAUTHENTICATED
    default: return 500;  // UNKNOWN, INTERNAL, DATA_LOSS
    }
}

const char* openai_error_type(int s) {
    switch (s) {
    case 400: case 404: case 409: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    case 499: return "cancelled";
    case 501: return "not_implemented_error";
    case 503: return "service_unavailable_error";
    case 504: return "timeout_error";
    default: return "server_error";
    }
}

const char* anthropic_error_type(int s) {
    switch (s) {
    case 400: case 409: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: case 529: return "overloaded_error";
    case 504: return "timeout_error";
    default: return "api_error";
    }
}

}  // namespace dg
