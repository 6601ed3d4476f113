// Minimal --flag value / --flag=value / --switch parsing for the subcommands, with clear errors.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dg::cli {

struct ParsedFlags {
    std::map<std::string, std::string> values;  // --name value
    std::set<std::string> switches;             // --name (declared as a switch)
    std::vector<std::string> positional;

    std::optional<std::string> get(const std::string& name) const;
    bool has(const std::string& name) const { return switches.count(name) > 0 || values.count(name) > 0; }
};

// `value_flags`: flags that take a value; `switch_flags`: boolean flags. Anything else is an error.
absl::StatusOr<ParsedFlags> parse_flags(const std::vector<std::string>& args,
                                        const std::set<std::string>& value_flags,
                                        const std::set<std::string>& switch_flags);

}  // namespace dg::cli
