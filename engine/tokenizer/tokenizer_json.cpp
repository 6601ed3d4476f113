// HF tokenizer.json loader. Accepts exactly the configuration Qwen byte-level BPE tokenizers use and
// rejects anything else by name, so an unsupported file fails loudly instead of tokenizing differently.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "engine/status.h"
#include "engine/tokenizer/tokenizer.h"

namespace dg::tok {

namespace {

using json = nlohmann::json;

constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen35Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

absl::Status unsupported(const std::string& src, const std::string& what) {
    return absl::UnimplementedError(absl::StrFormat("%s: unsupported tokenizer.json: %s", src, what));
}

absl::Status parse_normalizer(const json& n, const std::string& src, bool* nfc) {
    *nfc = false;
    if (n.is_null()) return absl::OkStatus();
    std::string type = n.value("type", "");
    if (type == "NFC") {
        *nfc = true;
        return absl::OkStatus();
    }
    if (type == "Sequence" && n.contains("normalizers") && n["normalizers"].size() == 1)
        return parse_normalizer(n["normalizers"][0], src, nfc);
    return unsupported(src, "normalizer " + n.dump());
}

absl::Status check_byte_level(const json& p, const std::string& src) {
    if (p.value("type", "") != "ByteLevel" || p.value("add_prefix_space", false) || p.value("use_regex", true))
        return unsupported(src, "pre-tokenizer step " + p.dump() + " (want ByteLevel without regex or prefix space)");
    return absl::OkStatus();
}

absl::Status parse_pre_tokenizer(const json& p, const std::string& src, PreTokenizer* pre) {
    if (p.value("type", "") != "Sequence" || !p.contains("pretokenizers") || p["pretokenizers"].size() != 2)
        return unsupported(src, "pre_tokenizer (want Sequence[Split, ByteLevel])");
    const json& split = p["pretokenizers"][0];
    if (split.value("type", "") != "Split" || split.value("behavior", "") != "Isolated" || split.value("invert", false) ||
        !split.contains("pattern") || !split["pattern"].contains("Regex"))
        return unsupported(src, "split step " + split.dump());
    std::string pattern = split["pattern"]["Regex"].get<std::string>();
    if (pattern == kQwen2Pattern) *pre = PreTokenizer::kQwen2;
    else if (pattern == kQwen35Pattern) *pre = PreTokenizer::kQwen35;
    else return unsupported(src, "split pattern " + pattern);
    return check_byte_level(p["pretokenizers"][1], src);
}

// Reads eos/pad names from tokenizer_config.json next to tokenizer.json, when there is one.
void read_config_names(const std::string& dir, std::string* eos, std::string* pad) {
    std::ifstream f(std::filesystem::path(dir) / "tokenizer_config.json");
    if (!f) return;
    json c = json::parse(f, nullptr, false);
    if (c.is_discarded()) return;
    auto name = [&](const char* key, std::string* out) {
        if (!c.contains(key)) return;
        if (c[key].is_string()) *out = c[key].get<std::string>();
        else if (c[key].is_object() && c[key].contains("content")) *out = c[key]["content"].get<std::string>();
    };
    name("eos_token", eos);
    name("pad_token", pad);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> from_json(const json& j, const std::string& src, const std::string& dir) {
    if (!j.is_object() || !j.contains("model")) return absl::InvalidArgumentError(src + ": no \"model\" object");
    const json& m = j["model"];
    if (m.value("type", "BPE") != "BPE") return unsupported(src, "model type " + m.value("type", ""));
    if (m.value("byte_fallback", false)) return unsupported(src, "byte_fallback");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty()) return unsupported(src, k);
    if (m.contains("dropout") && !m["dropout"].is_null()) return unsupported(src, "BPE dropout");
    if (!m.contains("vocab") || !m["vocab"].is_object() || !m.contains("merges") || !m["merges"].is_array())
        return absl::InvalidArgumentError(src + ": model needs \"vocab\" and \"merges\"");

    TokenizerSpec spec;
    spec.source = src;
    DG_RETURN_IF_ERROR(parse_normalizer(j.value("normalizer", json()), src, &spec.nfc));
    DG_RETURN_IF_ERROR(parse_pre_tokenizer(j.value("pre_tokenizer", json()), src, &spec.pre));

    std::vector<std::pair<int64_t, std::pair<std::string, TokenType>>> entries;
    for (const auto& [tok, id] : m["vocab"].items()) {
        if (!id.is_number_integer()) return absl::InvalidArgumentError(src + ": vocab id of '" + tok + "' is not an integer");
        entries.push_back({id.get<int64_t>(), {tok, TokenType::kNormal}});
    }
    if (j.contains("added_tokens")) {
        for (const json& a : j["added_tokens"]) {
            std::string content = a.value("content", "");
            for (const char* flag : {"single_word", "lstrip", "rstrip"})
                if (a.value(flag, false)) return unsupported(src, std::string("added token '") + content + "' with " + flag);
            if (a.value("normalized", false) && a.value("special", false))
                return unsupported(src, "normalized special token '" + content + "'");
            entries.push_back({a.value("id", int64_t(-1)),
                               {content, a.value("special", false) ? TokenType::kControl : TokenType::kUserDefined}});
        }
    }
    int64_t max_id = -1;
    for (auto& e : entries) {
        if (e.first < 0 || e.first >= INT32_MAX / 2)
            return absl::InvalidArgumentError(absl::StrFormat("%s: token '%s' has id %d", src, e.second.first, e.first));
        max_id = std::max(max_id, e.first);
    }
    spec.tokens.assign(max_id + 1, std::string());
    spec.types.assign(max_id + 1, TokenType::kUnused);
    std::vector<char> seen(max_id + 1, 0);
    for (auto& e : entries) {
        // An added token may restate a vocab entry; the added one decides the type (it is matched first).
        spec.tokens[e.first] = e.second.first;
        spec.types[e.first] = e.second.second;
        seen[e.first] = 1;
    }
    for (int64_t i = 0; i <= max_id; ++i)
        if (!seen[i]) return absl::InvalidArgumentError(absl::StrFormat("%s: no token has id %d", src, i));

    for (const json& mg : m["merges"]) {
        if (mg.is_string()) {  // legacy "a b": byte-level tokens never contain a space
            std::string s = mg.get<std::string>();
            size_t sp = s.find(' ', 1);
            if (sp == std::string::npos) return absl::InvalidArgumentError(src + ": malformed merge '" + s + "'");
            spec.merges.push_back({s.substr(0, sp), s.substr(sp + 1)});
        } else if (mg.is_array() && mg.size() == 2) {
            spec.merges.push_back({mg[0].get<std::string>(), mg[1].get<std::string>()});
        } else {
            return absl::InvalidArgumentError(src + ": malformed merge " + mg.dump());
        }
    }

    std::string eos = "<|endoftext|>", pad = "<|endoftext|>";
    if (!dir.empty()) read_config_names(dir, &eos, &pad);
    for (int32_t i = 0; i <= max_id; ++i) {
        if (spec.types[i] == TokenType::kNormal) continue;
        if (spec.tokens[i] == eos) spec.eos_id = i;
        if (spec.tokens[i] == pad) spec.pad_id = i;
    }
    return Tokenizer::create(std::move(spec));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> parse_tokenizer_json(std::string_view text, const std::string& source) {
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded()) return absl::InvalidArgumentError(source + ": not valid JSON");
    try {
        return from_json(j, source, "");
    } catch (const json::exception& e) {  // a field of the wrong JSON type
        return absl::InvalidArgumentError(source + ": " + e.what());
    }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> load_tokenizer_json(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return absl::NotFoundError(path + ": cannot open");
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) return absl::InvalidArgumentError(path + ": not valid JSON");
    try {
        return from_json(j, path, std::filesystem::path(path).parent_path().string());
    } catch (const json::exception& e) {
        return absl::InvalidArgumentError(path + ": " + e.what());
    }
}

}  // namespace dg::tok
