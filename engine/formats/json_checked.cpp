#include "engine/formats/json_checked.h"

#include <set>
#include <vector>

#include "absl/strings/str_format.h"

namespace dg {

namespace {

// Deepest bracket nesting outside strings; stops counting once over the limit.
int json_depth(std::string_view text, int limit) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) escaped = false;
            else if (c == '\\') escaped = true;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > deepest) deepest = depth;
            if (deepest > limit) return deepest;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

}  // namespace

absl::StatusOr<nlohmann::json> parse_json_checked(std::string_view text, const std::string& what, int max_depth) {
    if (json_depth(text, max_depth) > max_depth) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: JSON nested deeper than %d levels", what, max_depth));
    }
    // One key set per open object; a repeated key would otherwise silently keep the last value.
    std::vector<std::set<std::string>> open_objects;
    std::string duplicate;
    bool has_duplicate = false;
    auto callback = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        using E = nlohmann::json::parse_event_t;
        if (event == E::object_start) {
            open_objects.emplace_back();
        } else if (event == E::object_end) {
            if (!open_objects.empty()) open_objects.pop_back();
        } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
            const std::string& key = parsed.get_ref<const std::string&>();
            if (!open_objects.back().insert(key).second && !has_duplicate) {
                has_duplicate = true;
                duplicate = key;
            }
        }
        return true;
    };
    try {
        nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), callback);
        if (has_duplicate) {
            return absl::InvalidArgumentError(absl::StrFormat("%s: duplicate key '%s'", what, duplicate));
        }
        return j;
    } catch (const nlohmann::json::exception& e) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: invalid JSON: %s", what, e.what()));
    }
}

}  // namespace dg
