#include "engine/tokenizer/gguf_vocab.h"

#include <cstdio>

#include "absl/strings/str_format.h"
#include "engine/status.h"

namespace dg::tok {

absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer_from_gguf(const GgufFile& g) {
    const std::string& src = g.path();
    DG_ASSIGN_OR_RETURN(std::string model, g.get_string("tokenizer.ggml.model"));
    if (model != "gpt2")
        return absl::UnimplementedError(absl::StrFormat("%s: tokenizer.ggml.model '%s' is not supported (want gpt2)", src, model));
    TokenizerSpec spec;
    spec.source = src;
    std::string pre = "qwen35";
    if (g.find("tokenizer.ggml.pre")) {
        DG_ASSIGN_OR_RETURN(pre, g.get_string("tokenizer.ggml.pre"));
    }
    if (pre == "qwen35") spec.pre = PreTokenizer::kQwen35;
    else if (pre == "qwen2") spec.pre = PreTokenizer::kQwen2;
    else return absl::UnimplementedError(absl::StrFormat("%s: tokenizer.ggml.pre '%s' is not supported (want qwen35 or qwen2)", src, pre));

    DG_ASSIGN_OR_RETURN(spec.tokens, g.get_string_array("tokenizer.ggml.tokens"));
    spec.types.assign(spec.tokens.size(), TokenType::kNormal);
    if (g.find("tokenizer.ggml.token_type")) {
        DG_ASSIGN_OR_RETURN(std::vector<int64_t> types, g.get_int_array("tokenizer.ggml.token_type"));
        if (types.size() != spec.tokens.size())
            return absl::InvalidArgumentError(absl::StrFormat("%s: tokenizer.ggml.token_type has %d entries for %d tokens",
                                                              src, types.size(), spec.tokens.size()));
        for (size_t i = 0; i < types.size(); ++i) {
            if (types[i] < 1 || types[i] > 6)
                return absl::InvalidArgumentError(absl::StrFormat("%s: token %d has type %d", src, i, types[i]));
            spec.types[i] = static_cast<TokenType>(types[i]);
        }
    }
    DG_ASSIGN_OR_RETURN(std::vector<std::string> merges, g.get_string_array("tokenizer.ggml.merges"));
    spec.merges.reserve(merges.size());
    for (const std::string& m : merges) {
        size_t sp = m.find(' ', 1);
        if (sp == std::string::npos) return absl::InvalidArgumentError(src + ": malformed merge '" + m + "'");
        spec.merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
    }
    auto id = [&](const char* key, std::optional<int32_t>* out) -> absl::Status {
        if (!g.find(key)) return absl::OkStatus();
        DG_ASSIGN_OR_RETURN(int64_t v, g.get_int(key));
        *out = static_cast<int32_t>(v);
        return absl::OkStatus();
    };
    DG_RETURN_IF_ERROR(id("tokenizer.ggml.eos_token_id", &spec.eos_id));
    DG_RETURN_IF_ERROR(id("tokenizer.ggml.padding_token_id", &spec.pad_id));
    DG_RETURN_IF_ERROR(id("tokenizer.ggml.bos_token_id", &spec.bos_id));
    return Tokenizer::create(std::move(spec));
}

absl::Status add_tokenizer_to_gguf(const Tokenizer& tok, GgufWriter& w, int64_t pad_to_rows) {
    const int32_t n = tok.vocab_size();
    if (pad_to_rows < n)
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: vocabulary of %d tokens does not fit %d embedding rows", tok.source(), n, pad_to_rows));
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    tokens.reserve(pad_to_rows);
    types.reserve(pad_to_rows);
    for (int32_t i = 0; i < n; ++i) {
        tokens.push_back(tok.token(i));
        types.push_back(static_cast<int32_t>(tok.type(i)));
    }
    for (int64_t i = n; i < pad_to_rows; ++i) {
        tokens.push_back(absl::StrFormat("[PAD%d]", i));
        types.push_back(static_cast<int32_t>(TokenType::kUnused));
    }
    std::vector<std::string> merges;
    merges.reserve(tok.merges().size());
    for (const auto& [a, b] : tok.merges()) merges.push_back(a + " " + b);

    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", tok.pre_tokenizer() == PreTokenizer::kQwen35 ? "qwen35" : "qwen2");
    w.set_string_array("tokenizer.ggml.tokens", tokens);
    w.set_i32_array("tokenizer.ggml.token_type", types);
    w.set_string_array("tokenizer.ggml.merges", merges);
    if (tok.eos_id()) w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(*tok.eos_id()));
    if (tok.pad_id()) w.set_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(*tok.pad_id()));
    if (tok.bos_id()) w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*tok.bos_id()));
    w.set_bool("tokenizer.ggml.add_bos_token", false);  // Qwen prepends no BOS
    return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer(const std::string& path) {
    char magic[4] = {};
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
        size_t got = std::fread(magic, 1, 4, f);
        std::fclose(f);
        if (got == 4 && std::string_view(magic, 4) == "GGUF") {
            DG_ASSIGN_OR_RETURN(auto gguf, GgufFile::open(path));
            return tokenizer_from_gguf(*gguf);
        }
    } else {
        return absl::NotFoundError(path + ": cannot open");
    }
    return load_tokenizer_json(path);
}

}  // namespace dg::tok
