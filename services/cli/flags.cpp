#include "services/cli/flags.h"

#include "absl/strings/str_cat.h"

namespace dg::cli {

std::optional<std::string> ParsedFlags::get(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
}

absl::StatusOr<ParsedFlags> parse_flags(const std::vector<std::string>& args,
                                        const std::set<std::string>& value_flags,
                                        const std::set<std::string>& switch_flags) {
    ParsedFlags out;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
            out.positional.push_back(a);
            continue;
        }
        std::string name = a.substr(2), value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }
        if (switch_flags.count(name)) {
            if (has_value) return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
            out.switches.insert(name);
        } else if (value_flags.count(name)) {
            if (!has_value) {
                if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
                value = args[++i];
            }
            out.values[name] = value;
        } else {
            return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
        }
    }
    return out;
}

}  // namespace dg::cli
