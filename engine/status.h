// Error plumbing shared by the engine: absl::Status for anything a file, a request or a device can cause
// (DESIGN: two error regimes), DG_CHECK for invariants that only a bug can break.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"

#define DG_RETURN_IF_ERROR(expr)                   \
    do {                                           \
        ::absl::Status dg_status_ = (expr);        \
        if (!dg_status_.ok()) return dg_status_;   \
    } while (0)

#define DG_CONCAT_INNER_(a, b) a##b
#define DG_CONCAT_(a, b) DG_CONCAT_INNER_(a, b)
#define DG_ASSIGN_OR_RETURN(lhs, expr) DG_ASSIGN_OR_RETURN_IMPL_(DG_CONCAT_(dg_sor_, __LINE__), lhs, expr)
#define DG_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
    auto tmp = (expr);                            \
    if (!tmp.ok()) return tmp.status();           \
    lhs = std::move(tmp).value()

// Invariant check: a failure is a bug in deltagate, never bad input.
#define DG_CHECK(cond, ...)                                                              \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: invariant failed: %s: %s\n", __FILE__, __LINE__, \
                         #cond, ::absl::StrFormat(__VA_ARGS__).c_str());                 \
            std::abort();                                                                \
        }                                                                                \
    } while (0)
