// A model directory's tensors. With model.safetensors.index.json the index decides which files are read
// and where each tensor must be; without it every *.safetensors file is read, in name order.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_format.h"
#include "engine/formats/json_checked.h"
#include "engine/formats/safetensors.h"
#include "engine/status.h"

namespace dg {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";

absl::StatusOr<std::string> read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot open", path));
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) return absl::UnavailableError(absl::StrFormat("%s: read failed", path));
    return ss.str();
}

// index.json weight_map: tensor name -> file name inside the directory.
absl::StatusOr<std::map<std::string, std::string>> read_index(const std::string& index_path) {
    DG_ASSIGN_OR_RETURN(std::string text, read_text(index_path));
    DG_ASSIGN_OR_RETURN(nlohmann::json j, parse_json_checked(text, index_path));
    auto wm = j.is_object() ? j.find("weight_map") : j.end();
    if (wm == j.end() || !wm->is_object()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s: no 'weight_map' object", index_path));
    }
    std::map<std::string, std::string> out;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it->is_string()) {
            return absl::InvalidArgumentError(
                absl::StrFormat("%s: weight_map entry '%s' is not a file name", index_path, it.key()));
        }
        const std::string file = it->get<std::string>();
        // Only plain names: an index must not point outside its directory.
        if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
            return absl::InvalidArgumentError(
                absl::StrFormat("%s: weight_map entry '%s' names '%s', not a file in the directory", index_path,
                                it.key(), file));
        }
        out.emplace(it.key(), file);
    }
    return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsDir>> SafetensorsDir::open(const std::string& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrFormat("%s: not a directory", dir));

    const std::string index_path = (fs::path(dir) / kIndexName).string();
    const bool has_index = fs::exists(index_path, ec);
    std::map<std::string, std::string> weight_map;
    std::vector<std::string> names;
    if (has_index) {
        DG_ASSIGN_OR_RETURN(weight_map, read_index(index_path));
        std::set<std::string> unique;
        for (const auto& [tensor, file] : weight_map) unique.insert(file);
        names.assign(unique.begin(), unique.end());
        for (const std::string& n : names) {
            if (!fs::is_regular_file(fs::path(dir) / n, ec)) {
                return absl::NotFoundError(absl::StrFormat("%s: lists '%s', which does not exist", index_path, n));
            }
        }
    } else {
        for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
            if (e.path().extension() == ".safetensors" && e.is_regular_file(ec)) names.push_back(e.path().filename());
        }
        if (ec) return absl::UnavailableError(absl::StrFormat("%s: cannot list: %s", dir, ec.message()));
        std::sort(names.begin(), names.end());
        if (names.empty()) return absl::NotFoundError(absl::StrFormat("%s: no *.safetensors files", dir));
    }

    auto out = std::unique_ptr<SafetensorsDir>(new SafetensorsDir());
    for (const std::string& n : names) {
        DG_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f, SafetensorsFile::open((fs::path(dir) / n).string()));
        for (const StTensor& t : f->tensors()) {
            auto [it, inserted] = out->tensors_.emplace(t.name, t);
            if (!inserted) {
                return absl::InvalidArgumentError(
                    absl::StrFormat("tensor '%s' is in both %s and %s", t.name, it->second.file, t.file));
            }
        }
        out->files_.push_back(std::move(f));
    }
    for (const auto& [tensor, file] : weight_map) {
        auto it = out->tensors_.find(tensor);
        const std::string want = (fs::path(dir) / file).string();
        if (it == out->tensors_.end() || it->second.file != want) {
            return absl::InvalidArgumentError(absl::StrFormat("%s: tensor '%s' should be in %s but is %s", index_path,
                                                              tensor, file,
                                                              it == out->tensors_.end() ? "absent"
                                                                                        : "in " + it->second.file));
        }
    }
    return out;
}

const StTensor* SafetensorsDir::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace dg
