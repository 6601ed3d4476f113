// A small blocking HTTP/1.1 client over a TCP socket, enough to drive an OpenAI-compatible server: one
// request per connection (Connection: close), request bodies with Content-Length, response bodies framed by
// Content-Length, chunked transfer coding or the connection's end, and Server-Sent Events delivered one
// `data:` payload at a time as they arrive (the benchmark's clock needs each event when it lands, which a
// buffering client would hide). Plain http:// only.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace dg::bench {

struct Url {
    std::string host;
    int port = 80;
    std::string path;  // without a trailing '/', "" for the root
};

// "http://host:port/v1" -> {host, port, "/v1"}. https:// is refused with a message (no TLS here).
absl::StatusOr<Url> parse_http_url(std::string_view url);

struct HttpResponse {
    int status = 0;
    std::string body;  // the whole body, or what was not SSE when on_event is given
};

// Sends one request. When `on_event` is set and the response is 2xx with content type text/event-stream,
// each SSE event's data (the `data:` lines joined) is passed to it as soon as it is complete; returning
// false stops reading. Transport failures (connect, timeout, a connection closed mid-body) are errors
// whose message names the server; an HTTP error status is a response, not an error.
absl::StatusOr<HttpResponse> http_request(const Url& base, const std::string& method, const std::string& path,
                                          const std::string& body,
                                          const std::vector<std::pair<std::string, std::string>>& headers,
                                          double timeout_s,
                                          const std::function<bool(std::string_view)>& on_event = nullptr);

// The SSE decoder on its own (tests feed it arbitrary splits): push bytes, get complete events' data.
class SseDecoder {
public:
    // Calls `on_event` for each event completed by these bytes; false from it stops and returns false.
    bool push(std::string_view bytes, const std::function<bool(std::string_view)>& on_event);

private:
    std::string buf_, data_;
    bool has_data_ = false;
};

// The chunked transfer decoding on its own: push raw bytes, get payload bytes; done() after the last chunk.
class ChunkedDecoder {
public:
    // Appends decoded payload to *out. Error on malformed framing.
    absl::Status push(std::string_view bytes, std::string* out);
    bool done() const { return state_ == State::kDone; }

private:
    enum class State { kSize, kData, kDataEnd, kTrailer, kDone };
    State state_ = State::kSize;
    std::string line_;
    size_t remaining_ = 0;
};

}  // namespace dg::bench
