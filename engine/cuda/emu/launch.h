// Kernel launch in the CUDA emulation: the arguments are converted to the kernel's parameter types and
// copied at launch (as CUDA does), then every thread of every block runs the kernel on a fiber
// (block_runner.h). While a stream is capturing, the launch is recorded into the graph instead.
#pragma once

#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace dg::emu {

struct LaunchSpec {
    const char* name;    // the kernel expression as written at the launch site
    const void* func;    // the kernel, for cudaFuncSetAttribute limits
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    // The argument bytes, a graph node's parameters (last_graph_update_changes). A struct argument's
    // padding bytes are indeterminate: they can only make two equal launches look different, never the
    // reverse, so the audit errs towards reporting a change.
    std::string params;
};

// Validates the configuration against the emulated device's limits, then runs (or records) it.
cudaError_t submit_launch(const LaunchSpec& spec, std::function<void()> thread_body);

template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    std::string bytes;
    std::apply([&](const auto&... p) { (bytes.append(reinterpret_cast<const char*>(&p), sizeof(p)), ...); }, params);
    return submit_launch(LaunchSpec{name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream, std::move(bytes)},
                         [kernel, params]() { std::apply(kernel, params); });
}

}  // namespace dg::emu
