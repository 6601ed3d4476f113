// deltagate: one binary, many subcommands (see `deltagate help`).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "services/cli/command.h"

namespace dg::cli {

static std::vector<Command>& registry() {
    static std::vector<Command> r;
    return r;
}
bool register_command(const Command& c) {
    registry().push_back(c);
    return true;
}
const std::vector<Command>& commands() { return registry(); }

}  // namespace dg::cli

static void print_help() {
    std::printf("usage: deltagate <command> [flags]\n\ncommands:\n");
    for (const auto& c : dg::cli::commands()) std::printf("  %-12s %s\n", c.name, c.summary);
    std::printf("\n`deltagate <command> --help` describes a command's flags.\n");
}

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "help") || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    std::vector<std::string> args(argv + 2, argv + argc);
    for (const auto& c : dg::cli::commands())
        if (std::strcmp(c.name, argv[1]) == 0) return c.run(args);
    std::fprintf(stderr, "deltagate: unknown command '%s' (see `deltagate help`)\n", argv[1]);
    return 2;
}
