// The HTTP client's parsers on their own: URLs, chunked transfer coding and SSE framing split at every
// byte boundary (a server may flush anywhere), and one request against a real socket server in this test.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "services/bench/http_client.h"

namespace dg::bench {
namespace {

TEST(BenchHttp, ParsesUrls) {
    auto u = parse_http_url("http://127.0.0.1:8080/v1/");
    ASSERT_TRUE(u.ok());
    EXPECT_EQ(u->host, "127.0.0.1");
    EXPECT_EQ(u->port, 8080);
    EXPECT_EQ(u->path, "/v1");
    auto v = parse_http_url("http://[::1]:9000");
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(v->host, "::1");
    EXPECT_EQ(v->port, 9000);
    EXPECT_EQ(v->path, "");
    EXPECT_EQ(parse_http_url("http://example.com/x")->port, 80);
    EXPECT_FALSE(parse_http_url("https://x:1/v1").ok());
    EXPECT_FALSE(parse_http_url("x:1").ok());
    EXPECT_FALSE(parse_http_url("http://x:99999").ok());
}

TEST(BenchHttp, SseEventsAtEverySplit) {
    const std::string stream =
        ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\nevent: x\ndata:[DONE]\n\n";
    const std::vector<std::string> want = {"{\"a\":1}", "line1\nline2", "[DONE]"};
    for (size_t cut = 0; cut <= stream.size(); ++cut) {
        SseDecoder d;
        std::vector<std::string> got;
        auto on = [&](std::string_view e) {
            got.emplace_back(e);
            return true;
        };
        d.push(std::string_view(stream).substr(0, cut), on);
        d.push(std::string_view(stream).substr(cut), on);
        EXPECT_EQ(got, want) << "split at " << cut;
    }
}

TEST(BenchHttp, ChunkedAtEverySplit) {
    const std::string raw = "4\r\nWiki\r\n7;ext=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\n";
    for (size_t cut = 0; cut <= raw.size(); ++cut) {
        ChunkedDecoder d;
        std::string out;
        ASSERT_TRUE(d.push(std::string_view(raw).substr(0, cut), &out).ok());
        ASSERT_TRUE(d.push(std::string_view(raw).substr(cut), &out).ok());
        EXPECT_EQ(out, "Wikipedia in \r\nchunks.");
        EXPECT_TRUE(d.done());
    }
    ChunkedDecoder bad;
    std::string out;
    EXPECT_FALSE(bad.push("zz\r\n", &out).ok());
}

// A one-shot server on loopback that answers with `response` and records the request.
struct OneShot {
    int listen_fd = -1, port = 0;
    std::string request;
    std::thread t;
    explicit OneShot(std::string response) {
        listen_fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ::bind(listen_fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        socklen_t len = sizeof(a);
        ::getsockname(listen_fd, reinterpret_cast<sockaddr*>(&a), &len);
        port = ntohs(a.sin_port);
        ::listen(listen_fd, 1);
        t = std::thread([this, response] {
            const int c = ::accept(listen_fd, nullptr, nullptr);
            char buf[4096];
            while (request.find("\r\n\r\n") == std::string::npos) {
                const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
                if (n <= 0) break;
                request.append(buf, size_t(n));
            }
            // Byte by byte: the client must reassemble whatever the network does.
            for (char ch : response) (void)::send(c, &ch, 1, MSG_NOSIGNAL);
            ::close(c);
        });
    }
    ~OneShot() {
        t.join();
        ::close(listen_fd);
    }
};

TEST(BenchHttp, StreamsChunkedSseFromASocket) {
    const std::string body = "data: one\n\ndata: two\n\ndata: [DONE]\n\n";
    char size[16];
    std::snprintf(size, sizeof(size), "%zx", body.size());
    OneShot s(std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n") +
              size + "\r\n" + body + "\r\n0\r\n\r\n");
    Url u{"127.0.0.1", s.port, "/v1"};
    std::vector<std::string> events;
    auto r = http_request(u, "POST", "/v1/completions", "{}", {{"Authorization", "Bearer k"}}, 10,
                          [&](std::string_view e) {
                              events.emplace_back(e);
                              return true;
                          });
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(events, (std::vector<std::string>{"one", "two", "[DONE]"}));
    EXPECT_NE(s.request.find("POST /v1/completions HTTP/1.1\r\n"), std::string::npos);
    EXPECT_NE(s.request.find("Authorization: Bearer k\r\n"), std::string::npos);
}

TEST(BenchHttp, ErrorStatusBodyAndRefusedConnection) {
    {
        // Content-Length 22, more bytes sent: what follows the declared length is not part of the body.
        OneShot s("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 22\r\n\r\n"
                  "{\"error\":{\"message\":1}}xx");
        auto r = http_request(Url{"127.0.0.1", s.port, ""}, "GET", "/v1/models", "", {}, 10);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->status, 404);
        EXPECT_EQ(r->body.size(), 22u);
    }
    int port;
    {  // a port nobody listens on
        OneShot s("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        port = s.port;
        (void)http_request(Url{"127.0.0.1", port, ""}, "GET", "/", "", {}, 10);
    }
    auto r = http_request(Url{"127.0.0.1", port, ""}, "GET", "/", "", {}, 10);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.status().message()).find("cannot connect to 127.0.0.1:"), std::string::npos)
        << r.status();
}

}  // namespace
}  // namespace dg::bench
