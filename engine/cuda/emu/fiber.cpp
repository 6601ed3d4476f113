#include "engine/cuda/emu/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#if !defined(__x86_64__)
#error "the CUDA emulation's context switch is written for x86-64 (engine/cuda/emu/fiber.cpp)"
#endif

// dg_emu_fiber_switch(void** from, void* to): push the callee-saved registers, store rsp in *from, load
// `to` as rsp, pop the registers saved there and return into that context. The frame layout (low to
// high): r15 r14 r13 r12 rbx rbp <return address>. MXCSR and the x87 control word are not switched:
// every fiber of a process runs kernels under the same floating-point environment, which kernels never
// change (saving them made a switch about a third slower).
asm(R"(
    .text
    .globl dg_emu_fiber_switch
    .type dg_emu_fiber_switch,@function
dg_emu_fiber_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size dg_emu_fiber_switch, .-dg_emu_fiber_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

namespace dg::emu {

FiberStack::FiberStack(size_t bytes) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    bytes_ = (bytes + page - 1) / page * page + page;
    base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base_ == MAP_FAILED) {
        std::fprintf(stderr, "deltagate cuda-emu: cannot map a %zu-byte fiber stack\n", bytes_);
        std::abort();
    }
    mprotect(base_, page, PROT_NONE);  // guard page: stack overflow faults
}

FiberStack::~FiberStack() { munmap(base_, bytes_); }

void* FiberStack::prepare(void (*entry)()) {
    // top is 16-byte aligned; `entry` is entered by `ret` with rsp = top - 8, as if called.
    auto* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(base_) + bytes_) & ~uintptr_t(15));
    top[-1] = 0;                                     // entry's (never used) return address
    top[-2] = reinterpret_cast<uint64_t>(entry);     // popped by ret
    for (int i = 3; i <= 8; ++i) top[-i] = 0;        // rbp rbx r12 r13 r14 r15
    return top - 8;
}

}  // namespace dg::emu
