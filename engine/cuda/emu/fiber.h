// Cooperative fibers for the CUDA emulation: one per emulated GPU thread of the block being run. A
// hand-written x86-64 context switch (the callee-saved registers): no
// syscall per switch, unlike swapcontext, so a barrier costs a few nanoseconds per thread.
#pragma once

#include <cstddef>

namespace dg::emu {

// Saves the running context's stack pointer in *from and resumes the context saved in `to`.
extern "C" void dg_emu_fiber_switch(void** from, void* to);

// A fiber's stack: mmap'd with a guard page below it, so a kernel that overflows its stack faults
// instead of corrupting a neighbour.
class FiberStack {
public:
    explicit FiberStack(size_t bytes);
    ~FiberStack();
    FiberStack(const FiberStack&) = delete;
    FiberStack& operator=(const FiberStack&) = delete;
    // A saved context that starts `entry` (which must never return) on this stack.
    void* prepare(void (*entry)());

private:
    void* base_ = nullptr;  // guard page first
    size_t bytes_ = 0;      // including the guard page
};

}  // namespace dg::emu
