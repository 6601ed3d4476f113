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
};

// Validates the configuration against the emulated device's limits, then runs (or records) it.
// arg_bytes, called only while the stream captures: the arguments' bytes, part of the graph node's
// parameters (last_graph_update_changes). A struct argument's padding bytes are indeterminate: they can
// only make two equal launches look different, never the reverse, so the audit errs towards reporting a
// change.
cudaError_t submit_launch(const LaunchSpec& spec, std::function<void()> thread_body,
                          const std::function<std::string()>& arg_bytes = {});

template <typename... P, typename... A>
cudaError_t launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                   A&&... args) {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
    auto arg_bytes = [&params] {
        std::string bytes;
        std::apply([&](const auto&... p) { (bytes.append(reinterpret_cast<const char*>(&p), sizeof(p)), ...); }, params);
        return bytes;
    };
    return submit_launch(LaunchSpec{name, reinterpret_cast<const void*>(kernel), grid, block, smem, stream},
                         [kernel, params]() { std::apply(kernel, params); }, arg_bytes);
}

}  // namespace dg::emu
