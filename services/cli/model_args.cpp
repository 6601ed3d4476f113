#include "services/cli/model_args.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/model_export.h"
#include "engine/model_source.h"
#include "engine/status.h"

namespace dg::cli {

absl::StatusOr<std::string> default_model_path() {
    namespace fs = std::filesystem;
    fs::path dir;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = fs::path(x) / "deltagate";
    else if (const char* h = std::getenv("HOME"); h && *h) dir = fs::path(h) / ".cache" / "deltagate";
    else dir = fs::temp_directory_path() / "deltagate";
    const fs::path file = dir / "tiny-f32.gguf";
    std::error_code ec;
    if (fs::exists(file, ec)) return file.string();
    fs::create_directories(dir, ec);
    if (ec) return absl::InternalError(absl::StrCat(dir.string(), ": cannot create: ", ec.message()));
    std::fprintf(stderr, "deltagate: writing the built-in tiny model to %s\n", file.string().c_str());
    DG_ASSIGN_OR_RETURN(ModelConfig c, preset_config("tiny"));
    GgufExportOptions opt;
    opt.type = "f32";
    opt.name = "deltagate built-in tiny (random weights)";
    const fs::path tmp = file.string() + ".partial";
    DG_RETURN_IF_ERROR(export_gguf(random_model(c, 0), tmp.string(), opt));
    fs::rename(tmp, file, ec);
    if (ec) return absl::InternalError(absl::StrCat(file.string(), ": ", ec.message()));
    return file.string();
}

absl::StatusOr<std::unique_ptr<Runner>> open_runner(const ParsedFlags& f, RunnerOptions opt) {
    std::string path;
    if (auto m = f.get("model")) {
        path = *m;
    } else {
        DG_ASSIGN_OR_RETURN(path, default_model_path());
    }
    BackendKind kind = default_backend_kind();
    if (auto b = f.get("backend")) {
        DG_ASSIGN_OR_RETURN(kind, backend_kind_from_name(*b));
    }
    if (auto t = f.get("kv-type")) {
        DG_ASSIGN_OR_RETURN(opt.kv_type, dtype_from_name(*t));
    }
    if (auto th = f.get("threads")) setenv("DG_CPU_THREADS", th->c_str(), 1);
    return Runner::open(path, kind, opt);
}

absl::StatusOr<std::vector<int32_t>> parse_token_list(const std::string& s) {
    std::vector<int32_t> out;
    for (absl::string_view part : absl::StrSplit(s, absl::ByAnyChar(", \n\t"), absl::SkipEmpty())) {
        int32_t v;
        if (!absl::SimpleAtoi(part, &v) || v < 0)
            return absl::InvalidArgumentError(absl::StrCat("not a token id: '", part, "'"));
        out.push_back(v);
    }
    if (out.empty()) return absl::InvalidArgumentError("no token ids given");
    return out;
}

}  // namespace dg::cli
