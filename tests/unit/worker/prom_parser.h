// A strict parser for the Prometheus text format 0.0.4, enough to check what the worker serves:
// HELP/TYPE before samples, one block per family, valid names and labels, numeric values, histograms
// with cumulative buckets ending at +Inf and matching _count.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace dg::worker::testing {

struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
};

struct Scrape {
    std::map<std::string, std::string> type;  // family -> counter|gauge|histogram|...
    std::vector<Sample> samples;
    std::string error;                        // empty when the text is valid

    // The value of the sample with this name and exactly these labels; NaN when absent.
    double get(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
        for (const Sample& s : samples)
            if (s.name == name && s.labels == labels) return s.value;
        return NAN;
    }
};

inline bool parse_value(const std::string& s, double* v) {
    if (s == "+Inf") { *v = INFINITY; return true; }
    if (s == "-Inf") { *v = -INFINITY; return true; }
    if (s == "NaN") { *v = NAN; return true; }
    char* end = nullptr;
    *v = std::strtod(s.c_str(), &end);
    return !s.empty() && end == s.c_str() + s.size();
}

inline std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
    for (const char* suf : {"_bucket", "_sum", "_count"}) {
        const std::string sfx = suf;
        if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
            const std::string base = name.substr(0, name.size() - sfx.size());
            auto it = types.find(base);
            if (it != types.end() && it->second == "histogram") return base;
        }
    }
    return name;
}

inline Scrape parse_prometheus(const std::string& text) {
    static const std::regex name_re("[a-zA-Z_:][a-zA-Z0-9_:]*");
    static const std::regex label_re("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\\\n]|\\\\[\\\\\"n])*)\"");
    Scrape out;
    auto fail = [&](const std::string& why, const std::string& line) {
        if (out.error.empty()) out.error = why + ": '" + line + "'";
    };
    if (!text.empty() && text.back() != '\n') fail("text must end with a newline", "");
    std::set<std::string> closed;  // families whose block has ended
    std::string current;
    std::set<std::string> helped;
    const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
    for (const std::string& line : lines) {
        if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
            std::vector<std::string> parts = absl::StrSplit(line.substr(7), absl::MaxSplits(' ', 1));
            if (parts.size() != 2 || !std::regex_match(parts[0], name_re)) { fail("bad comment", line); continue; }
            const std::string& fam = parts[0];
            if (fam != current) {
                if (closed.contains(fam)) fail("family split in two blocks", line);
                if (!current.empty()) closed.insert(current);
                current = fam;
            }
            if (line[2] == 'T') {
                static const std::set<std::string> kinds = {"counter", "gauge", "histogram", "summary", "untyped"};
                if (!kinds.contains(parts[1])) fail("bad type", line);
                if (out.type.contains(fam)) fail("TYPE twice", line);
                out.type[fam] = parts[1];
            } else {
                if (helped.contains(fam)) fail("HELP twice", line);
                helped.insert(fam);
            }
            continue;
        }
        if (line[0] == '#') continue;
        Sample s;
        size_t i = 0;
        while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
        s.name = line.substr(0, i);
        if (!std::regex_match(s.name, name_re)) { fail("bad metric name", line); continue; }
        if (i < line.size() && line[i] == '{') {
            const size_t close = line.find("} ", i);
            if (close == std::string::npos) { fail("unterminated labels", line); continue; }
            std::string body = line.substr(i + 1, close - i - 1);
            std::string rest = body;
            std::smatch m;
            while (!rest.empty()) {
                if (!std::regex_search(rest, m, label_re) || m.position(0) != 0) { fail("bad labels", line); break; }
                if (s.labels.contains(m[1])) fail("label twice", line);
                s.labels[m[1]] = m[2];
                rest = m.suffix();
                if (!rest.empty()) {
                    if (rest[0] != ',') { fail("bad label separator", line); break; }
                    rest = rest.substr(1);
                }
            }
            i = close + 1;
        }
        if (i >= line.size() || line[i] != ' ') { fail("no value", line); continue; }
        std::vector<std::string> vt = absl::StrSplit(line.substr(i + 1), ' ');
        if (vt.empty() || vt.size() > 2 || !parse_value(vt[0], &s.value)) { fail("bad value", line); continue; }
        const std::string fam = family_of(s.name, out.type);
        if (fam != current) fail("sample outside its family's block (or before its TYPE)", line);
        out.samples.push_back(std::move(s));
    }
    // Histograms: per label set, cumulative buckets, +Inf present and equal to _count.
    for (const auto& [fam, kind] : out.type) {
        if (kind != "histogram") continue;
        std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
        for (const Sample& s : out.samples) {
            if (s.name != fam + "_bucket") continue;
            auto labels = s.labels;
            if (!labels.contains("le")) { fail("bucket without le", fam); continue; }
            double le;
            if (!parse_value(labels["le"], &le)) fail("bad le", fam);
            labels.erase("le");
            buckets[labels].push_back({le, s.value});
        }
        for (const auto& [labels, bs] : buckets) {
            for (size_t k = 1; k < bs.size(); ++k)
                if (!(bs[k].first > bs[k - 1].first) || bs[k].second < bs[k - 1].second) fail("buckets not cumulative", fam);
            if (bs.empty() || !std::isinf(bs.back().first)) { fail("no +Inf bucket", fam); continue; }
            if (out.get(fam + "_count", labels) != bs.back().second) fail("+Inf bucket != _count", fam);
            if (std::isnan(out.get(fam + "_sum", labels))) fail("no _sum", fam);
        }
    }
    return out;
}

}  // namespace dg::worker::testing
