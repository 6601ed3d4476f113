// The `deltagate` command's subcommands. Each lives in services/cli/cmd_<name>.cpp and registers itself
// with DG_COMMAND; main.cpp only dispatches and prints help.
#pragma once

#include <string>
#include <vector>

namespace dg::cli {

using CommandFn = int (*)(const std::vector<std::string>& args);

struct Command {
    const char* name;
    const char* summary;  // one line for `deltagate help`
    CommandFn run;
};

bool register_command(const Command& c);
const std::vector<Command>& commands();

}  // namespace dg::cli

#define DG_COMMAND(name, summary, fn) \
    static const bool dg_cmd_registered_##fn = ::dg::cli::register_command({name, summary, fn})
