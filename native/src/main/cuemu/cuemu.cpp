// cuemu runtime: runs a kernel's blocks one after another, each block's threads as fibers.
// Fibers start through ucontext and then switch with _setjmp/_longjmp, which (unlike
// swapcontext) makes no system call per switch.
#include "cuemu.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <ucontext.h>
#include <vector>

dim3 emu_block_dim;
dim3 emu_grid_dim;
dim3 emu_block_idx;
EmuThread* emu_current;

extern EmuKernel emu_kernels[];
extern const int emu_kernel_count;

namespace {

constexpr size_t kStackBytes = 256 * 1024;
enum Wait { NONE, BLOCK, WARP };

struct Fiber {
    EmuThread thread;
    ucontext_t start;
    jmp_buf resume;
    char* stack;
    bool started, done;
    Wait wait;
    unsigned long waitGen;
};

struct Block {
    std::vector<Fiber> fibers;
    jmp_buf scheduler;
    int current;
    int alive, arrived;
    unsigned long gen;
    std::vector<int> warpAlive, warpArrived;
    std::vector<unsigned long> warpGen;
    std::vector<uint64_t> slots;   // [warp][lane] shuffle exchange
    void (*invoke)(void**);
    void** params;
};

Block* B;
std::mutex launchLock;
std::string lastError;
std::vector<std::unique_ptr<char[]>> stacks;   // kept between launches

void yield_to_scheduler() {
    Fiber& f = B->fibers[B->current];
    if (_setjmp(f.resume) == 0) _longjmp(B->scheduler, 1);
}

void release_block_if_complete() {
    if (B->arrived > 0 && B->arrived >= B->alive) {
        B->arrived = 0;
        B->gen++;
    }
}

void release_warp_if_complete(int w) {
    if (B->warpArrived[w] > 0 && B->warpArrived[w] >= B->warpAlive[w]) {
        B->warpArrived[w] = 0;
        B->warpGen[w]++;
    }
}

void warp_barrier() {
    Fiber& f = B->fibers[B->current];
    const int w = f.thread.warp;
    const unsigned long gen = B->warpGen[w];
    B->warpArrived[w]++;
    release_warp_if_complete(w);
    if (B->warpGen[w] != gen) return;   // this fiber completed the barrier
    f.wait = WARP;
    f.waitGen = gen;
    yield_to_scheduler();
}

void fiber_main() {
    Fiber& f = B->fibers[B->current];
    B->invoke(B->params);
    f.done = true;
    B->alive--;
    B->warpAlive[f.thread.warp]--;
    release_block_if_complete();
    release_warp_if_complete(f.thread.warp);
    _longjmp(B->scheduler, 1);
}

bool runnable(const Fiber& f) {
    if (f.done) return false;
    switch (f.wait) {
        case BLOCK: return B->gen != f.waitGen;
        case WARP: return B->warpGen[f.thread.warp] != f.waitGen;
        default: return true;
    }
}

// Runs the current block to completion; false on a barrier that can never complete.
bool run_block() {
    for (;;) {
        // volatile: the loop longjmps back into this frame from the fibers
        volatile bool progress = false, remaining = false;
        for (B->current = 0; B->current < (int) B->fibers.size(); B->current++) {
            Fiber& f = B->fibers[B->current];
            if (f.done) continue;
            remaining = true;
            if (!runnable(f)) continue;
            progress = true;
            f.wait = NONE;
            emu_current = &f.thread;
            if (_setjmp(B->scheduler) == 0) {
                if (!f.started) {
                    f.started = true;
                    setcontext(&f.start);
                } else {
                    _longjmp(f.resume, 1);
                }
            }
            // back here whenever the fiber waits or finishes
        }
        if (!remaining) return true;
        if (!progress) return false;
    }
}

}  // namespace

void __syncthreads() {
    Fiber& f = B->fibers[B->current];
    const unsigned long gen = B->gen;
    B->arrived++;
    release_block_if_complete();
    if (B->gen != gen) return;
    f.wait = BLOCK;
    f.waitGen = gen;
    yield_to_scheduler();
}

void __syncwarp(unsigned int) { warp_barrier(); }

uint64_t emu_exchange(uint64_t mine, int src) {
    const int w = emu_current->warp, lane = emu_current->lane;
    B->slots[w * 32 + lane] = mine;
    warp_barrier();
    const uint64_t got = B->slots[w * 32 + (src >= 0 && src < 32 ? src : lane)];
    warp_barrier();
    return got;
}

extern "C" int emu_find(const char* name) {
    for (int i = 0; i < emu_kernel_count; i++)
        if (std::strcmp(emu_kernels[i].name, name) == 0) return i;
    return -1;
}

extern "C" const char* emu_last_error() { return lastError.c_str(); }

extern "C" int emu_launch(int kernel, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                          unsigned int by, unsigned int bz, unsigned int sharedBytes, void** params) {
    std::lock_guard<std::mutex> guard(launchLock);
    lastError.clear();
    if (kernel < 0 || kernel >= emu_kernel_count) {
        lastError = "no such kernel index " + std::to_string(kernel);
        return 1;
    }
    const unsigned long threads = (unsigned long) bx * by * bz;
    if (threads == 0 || threads > 1024 || gx == 0 || gy == 0 || gz == 0) {
        lastError = "invalid launch configuration for " + std::string(emu_kernels[kernel].name);
        return 1;
    }
    if (sharedBytes != 0) {
        lastError = "dynamic shared memory is not emulated";
        return 1;
    }
    while (stacks.size() < threads) stacks.emplace_back(new char[kStackBytes]);

    Block block;
    B = &block;
    block.invoke = emu_kernels[kernel].invoke;
    block.params = params;
    const int warps = (int) ((threads + 31) / 32);
    emu_block_dim = {bx, by, bz};
    emu_grid_dim = {gx, gy, gz};
    block.fibers.resize(threads);
    block.slots.assign((size_t) warps * 32, 0);
    for (unsigned int z = 0; z < gz; z++) {
        for (unsigned int y = 0; y < gy; y++) {
            for (unsigned int x = 0; x < gx; x++) {
                emu_block_idx = {x, y, z};
                block.alive = (int) threads;
                block.arrived = 0;
                block.gen = 0;
                block.warpAlive.assign(warps, 0);
                block.warpArrived.assign(warps, 0);
                block.warpGen.assign(warps, 0);
                for (unsigned long t = 0; t < threads; t++) {
                    Fiber& f = block.fibers[t];
                    f.thread.idx = {(unsigned int) (t % bx), (unsigned int) ((t / bx) % by), (unsigned int) (t / (bx * by))};
                    f.thread.lane = (int) (t % 32);
                    f.thread.warp = (int) (t / 32);
                    block.warpAlive[f.thread.warp]++;
                    f.started = false;
                    f.done = false;
                    f.wait = NONE;
                    f.stack = stacks[t].get();
                    getcontext(&f.start);
                    f.start.uc_stack.ss_sp = f.stack;
                    f.start.uc_stack.ss_size = kStackBytes;
                    f.start.uc_link = nullptr;
                    makecontext(&f.start, fiber_main, 0);
                }
                if (!run_block()) {
                    lastError = std::string(emu_kernels[kernel].name)
                            + ": barrier never completes (a __syncthreads or shuffle not reached by every thread)";
                    B = nullptr;
                    return 2;
                }
            }
        }
    }
    B = nullptr;
    return 0;
}
