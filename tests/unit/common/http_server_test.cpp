// The /metrics HTTP server: IPv4, IPv6 literals in brackets, dual stack on "[::]", clear errors.
#include "services/common/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace dg {
namespace {

// One GET over a fresh connection to `ip` (v4 or v6 literal); the raw response, "" when unreachable.
std::string get(const std::string& ip, int port, const std::string& path) {
    sockaddr_storage sa{};
    socklen_t len = 0;
    int family = AF_INET;
    if (ip.find(':') != std::string::npos) {
        family = AF_INET6;
        auto* a = reinterpret_cast<sockaddr_in6*>(&sa);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(uint16_t(port));
        if (inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr) != 1) return "";
        len = sizeof *a;
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&sa);
        a->sin_family = AF_INET;
        a->sin_port = htons(uint16_t(port));
        if (inet_pton(AF_INET, ip.c_str(), &a->sin_addr) != 1) return "";
        len = sizeof *a;
    }
    const int fd = ::socket(family, SOCK_STREAM, 0);
    if (fd < 0) return "";
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), len) == 0) {
        const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == ssize_t(req.size())) {
            char buf[4096];
            ssize_t n;
            while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, size_t(n));
        }
    }
    ::close(fd);
    return out;
}

bool have_ipv6_loopback() {
    const int fd = ::socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

HttpResponse hello(const HttpRequest& r) {
    HttpResponse resp;
    resp.body = "hello " + r.path;
    return resp;
}

TEST(HttpServer, ServesIpv4) {
    auto s = HttpServer::start("127.0.0.1:0", hello);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_GT((*s)->port(), 0);
    EXPECT_EQ((*s)->address(), "127.0.0.1:" + std::to_string((*s)->port()));
    const std::string r = get("127.0.0.1", (*s)->port(), "/metrics");
    EXPECT_NE(r.find("200"), std::string::npos) << r;
    EXPECT_NE(r.find("hello /metrics"), std::string::npos) << r;
}

TEST(HttpServer, ServesIpv6AndDualStack) {
    if (!have_ipv6_loopback()) GTEST_SKIP() << "no IPv6 loopback on this machine";
    auto v6 = HttpServer::start("[::1]:0", hello);
    ASSERT_TRUE(v6.ok()) << v6.status();
    EXPECT_EQ((*v6)->address(), "[::1]:" + std::to_string((*v6)->port()));
    EXPECT_NE(get("::1", (*v6)->port(), "/a").find("hello /a"), std::string::npos);

    auto any = HttpServer::start("[::]:0", hello);  // what a pod on an IPv6 or dual-stack cluster binds
    ASSERT_TRUE(any.ok()) << any.status();
    EXPECT_NE(get("::1", (*any)->port(), "/b").find("hello /b"), std::string::npos);
    EXPECT_NE(get("127.0.0.1", (*any)->port(), "/c").find("hello /c"), std::string::npos);
}

TEST(HttpServer, BadAddressesAreClearErrors) {
    auto no_port = HttpServer::start("127.0.0.1", hello);
    ASSERT_FALSE(no_port.ok());
    EXPECT_NE(no_port.status().message().find("host:port"), std::string_view::npos);
    auto bad_port = HttpServer::start("127.0.0.1:70000", hello);
    EXPECT_FALSE(bad_port.ok());
    auto s = HttpServer::start("127.0.0.1:0", hello);
    ASSERT_TRUE(s.ok());
    auto taken = HttpServer::start("127.0.0.1:" + std::to_string((*s)->port()), hello);
    ASSERT_FALSE(taken.ok());
    EXPECT_NE(taken.status().message().find("cannot listen"), std::string_view::npos) << taken.status();
}

}  // namespace
}  // namespace dg
