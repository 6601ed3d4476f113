// deltagate chat: a terminal conversation against a front, streamed token by token. The history is kept
// here and sent each turn (rendered prefix-stable, with a session id, so the worker resumes from the
// previous turn's state checkpoint instead of re-reading the conversation). Against a front without a
// tokenizer (the built-in tiny model), each line is a list of token ids instead.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <random>

#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "deltagate/v1/inference.grpc.pb.h"
#include "services/cli/command.h"
#include "services/cli/flags.h"
#include "services/cli/model_args.h"

namespace dg::cli {
namespace {

namespace v1 = ::deltagate::v1;

int run_chat(const std::vector<std::string>& args) {
    auto f = parse_flags(args, {"front", "system", "max-tokens", "temperature", "auth-token", "tls-ca", "deadline-s"},
                         {"help", "no-thinking", "tls"});
    if (!f.ok() || f->has("help")) {
        if (!f.ok()) std::fprintf(stderr, "deltagate chat: %s\n", std::string(f.status().message()).c_str());
        std::fprintf(stderr,
                     "usage: deltagate chat [--front HOST:PORT (127.0.0.1:50051)] [--system TEXT] [--no-thinking]\n"
                     "         [--max-tokens N] [--temperature T] [--auth-token TOKEN] [--tls [--tls-ca PEM]]\n"
                     "         [--deadline-s S]\n"
                     "Type a message and press Enter; an empty line or Ctrl-D ends the chat.\n");
        return f.ok() ? 0 : 2;
    }
    const std::string target = f->get("front").value_or("127.0.0.1:50051");
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (f->has("tls")) {
        grpc::SslCredentialsOptions ssl;
        if (auto ca = f->get("tls-ca")) {
            FILE* fp = std::fopen(ca->c_str(), "rb");
            if (!fp) {
                std::fprintf(stderr, "deltagate chat: cannot read %s\n", ca->c_str());
                return 2;
            }
            char buf[4096];
            size_t n;
            while ((n = std::fread(buf, 1, sizeof(buf), fp)) > 0) ssl.pem_root_certs.append(buf, n);
            std::fclose(fp);
        }
        creds = grpc::SslCredentials(ssl);
    }
    auto stub = v1::Inference::NewStub(grpc::CreateChannel(target, creds));
    int max_tokens = 512;
    float temperature = 0.7f;
    double deadline_s = 600;
    if (auto m = f->get("max-tokens"); m && (!absl::SimpleAtoi(*m, &max_tokens) || max_tokens < 1)) return 2;
    if (auto t = f->get("temperature"); t && !absl::SimpleAtof(*t, &temperature)) return 2;
    if (auto d = f->get("deadline-s"); d && !absl::SimpleAtod(*d, &deadline_s)) return 2;
    auto auth = [&](grpc::ClientContext& ctx) {
        std::string token = f->get("auth-token").value_or("");
        if (const char* e = std::getenv("DELTAGATE_AUTH_TOKEN"); token.empty() && e) token = e;
        if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    };

    grpc::ClientContext lctx;
    auth(lctx);
    lctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::ListModelsResponse models;
    if (auto s = stub->ListModels(&lctx, v1::ListModelsRequest(), &models); !s.ok() || models.models_size() == 0) {
        std::fprintf(stderr, "deltagate chat: cannot reach a front at %s: %s\n", target.c_str(), s.error_message().c_str());
        return 1;
    }
    const auto& model = models.models(0);
    const bool text_mode = model.has_tokenizer();
    const bool tty = ::isatty(1);
    std::fprintf(stderr, "connected to %s: model %s (%d/%d workers healthy)%s\n", target.c_str(), model.name().c_str(),
                 model.workers_healthy(), model.workers_total(),
                 text_mode ? "" : "\nthis model has no tokenizer: type token ids, e.g. 1 2 3");
    std::mt19937_64 rng(std::random_device{}());
    const std::string session = absl::StrCat("chat-", rng());

    v1::Chat chat;
    chat.set_prefix_stable(true);
    chat.set_enable_thinking(!f->has("no-thinking"));
    if (auto sys = f->get("system")) {
        auto* m = chat.add_messages();
        m->set_role("system");
        m->set_content(*sys);
    }
    std::vector<int32_t> history_ids;  // token mode: the conversation so far
    int failed_turns = 0;              // the exit status says whether every turn worked (scripts, probes)
    std::string line;
    while (true) {
        std::fprintf(stderr, tty ? "\n\033[1m> \033[0m" : "\n> ");
        if (!std::getline(std::cin, line) || line.empty()) break;
        v1::GenerateRequest req;
        req.set_model(model.name());
        req.mutable_sampling()->set_temperature(temperature);
        req.mutable_stop()->set_max_tokens(max_tokens);
        req.mutable_cache()->set_session_id(session);
        if (text_mode) {
            auto* m = chat.add_messages();
            m->set_role("user");
            m->set_content(line);
            *req.mutable_prompt()->mutable_chat() = chat;
        } else {
            auto ids = parse_token_list(line);
            if (!ids.ok()) {
                std::fprintf(stderr, "%s\n", std::string(ids.status().message()).c_str());
                continue;
            }
            history_ids.insert(history_ids.end(), ids->begin(), ids->end());
            req.mutable_prompt()->mutable_token_ids()->mutable_ids()->Assign(history_ids.begin(), history_ids.end());
        }
        grpc::ClientContext ctx;
        auth(ctx);
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(int64_t(deadline_s * 1000)));
        auto reader = stub->Generate(&ctx, req);
        v1::GenerateResponse resp;
        std::string answer, reasoning;
        std::vector<int32_t> out_ids;
        bool in_reasoning = false;
        while (reader->Read(&resp)) {
            if (resp.has_delta()) {
                const auto& d = resp.delta();
                out_ids.insert(out_ids.end(), d.token_ids().begin(), d.token_ids().end());
                if (!d.reasoning_text().empty()) {
                    if (!in_reasoning && tty) std::fputs("\033[2m", stdout);
                    in_reasoning = true;
                    std::fputs(d.reasoning_text().c_str(), stdout);
                    reasoning += d.reasoning_text();
                }
                if (!d.text().empty()) {
                    if (in_reasoning) std::fputs(tty ? "\033[0m\n" : "\n", stdout);
                    in_reasoning = false;
                    std::fputs(d.text().c_str(), stdout);
                    answer += d.text();
                }
                if (!text_mode) std::printf("%s ", absl::StrJoin(d.token_ids(), " ").c_str());
                std::fflush(stdout);
            } else if (resp.has_finished()) {
                for (const auto& tc : resp.finished().tool_calls())
                    std::printf("\n[tool call] %s(%s)", tc.name().c_str(), tc.arguments_json().c_str());
            } else if (resp.has_final()) {
                const auto& u = resp.final().usage();
                const auto& t = resp.final().timings();
                std::fprintf(stderr, "%s\n[%d prompt tokens (%d cached), %d generated; first token %.0f ms, %s]",
                             tty ? "\033[0m" : "", u.prompt_tokens(), u.cached_tokens_device() + u.cached_tokens_host(),
                             u.completion_tokens(), t.ttft_ms(), resp.final().worker().c_str());
            }
        }
        grpc::Status s = reader->Finish();
        if (!s.ok()) {
            std::fprintf(stderr, "\ndeltagate chat: %s\n", s.error_message().c_str());
            ++failed_turns;
            if (text_mode) chat.mutable_messages()->RemoveLast();
            continue;
        }
        if (text_mode) {
            auto* m = chat.add_messages();
            m->set_role("assistant");
            m->set_content(answer);
            if (!reasoning.empty()) m->set_reasoning_content(reasoning);
        } else {
            history_ids.insert(history_ids.end(), out_ids.begin(), out_ids.end());
        }
    }
    std::fprintf(stderr, "\n");
    return failed_turns > 0 ? 1 : 0;
}

}  // namespace

DG_COMMAND("chat", "a terminal chat against a front, streamed", run_chat);

}  // namespace dg::cli
