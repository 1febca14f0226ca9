// cuda_emulation.h: run a CUDA kernel on the CPU, one host thread per CUDA thread.
//
// Include this header, then a kernels/*.cu file, and compile with the system C++
// compiler (g++ -std=c++20 -pthread). What each CUDA word becomes:
//
//   __global__, __device__, __forceinline__   nothing: kernels become ordinary functions
//   threadIdx, blockIdx, blockDim, gridDim    thread_local variables set by the launcher
//   __shared__                                 static: one copy, seen by all threads of the
//                                              running block (blocks run one after another)
//   __syncthreads()                            a std::barrier that all threads of the block meet at
//
// The launcher (emu::launch) starts blockDim.x*y*z host threads once. Each of them
// walks the blocks in order: for every block it sets blockIdx, runs the kernel as
// its own threadIdx, and then waits at the barrier until the whole block is done.
// So a block's threads really run at the same time (a missing __syncthreads shows
// up as a wrong answer, as it would on a GPU), while blocks never overlap.
//
// Rule this relies on (good CUDA style anyway): every thread of a block reaches each
// __syncthreads(), i.e. no early `return` before a barrier.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;

namespace emu {
inline std::barrier<>* block_barrier = nullptr;
}

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

// The device math functions the kernels use, for both float and double.
using std::exp;
using std::fmax;
using std::fmin;
using std::log;
using std::sqrt;
inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }

namespace emu {

// The C spelling of an argument's type, to check what Python passes against the signature.
template <typename T> const char* type_name();
template <> inline const char* type_name<float>() { return "float"; }
template <> inline const char* type_name<double>() { return "double"; }
template <> inline const char* type_name<int>() { return "int"; }
template <> inline const char* type_name<long long>() { return "long long"; }
template <> inline const char* type_name<signed char>() { return "signed char"; }
template <> inline const char* type_name<unsigned char>() { return "unsigned char"; }

template <typename T> std::string arg_type() {
    if constexpr (std::is_pointer_v<T>) {
        return std::string(type_name<std::remove_cv_t<std::remove_pointer_t<T>>>()) + "*";
    } else {
        return type_name<std::remove_cv_t<T>>();
    }
}

struct Kernel {
    std::string signature;                   // e.g. "float*,float*,int"
    std::function<void(void**)> call;        // unpacks the argument pointers and calls the kernel
};

template <typename... Args, std::size_t... I>
void call_with(void (*kernel)(Args...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<Args>*>(args[I])...);
}

template <typename... Args>
Kernel wrap(void (*kernel)(Args...)) {
    std::string signature;
    ((signature += (signature.empty() ? "" : ",") + arg_type<Args>()), ...);
    return {signature, [kernel](void** args) { call_with(kernel, args, std::index_sequence_for<Args...>{}); }};
}

inline std::map<std::string, Kernel>& registry() {
    static std::map<std::string, Kernel> kernels;
    return kernels;
}

struct Register {
    Register(const char* name, Kernel kernel) { registry()[name] = std::move(kernel); }
};

}  // namespace emu

#define EMU_CONCAT2(a, b) a##b
#define EMU_CONCAT(a, b) EMU_CONCAT2(a, b)
// EMU_KERNEL("relu_forward<float>", relu_forward<float>) makes the instantiation callable by name.
#define EMU_KERNEL(name, ...) static emu::Register EMU_CONCAT(emu_register_, __COUNTER__)(name, emu::wrap(&__VA_ARGS__));

extern "C" {

// (Not inline: these two are the library's exported entry points.)
// The signature of a registered kernel ("" if unknown), for the Python side to check its arguments.
const char* emu_signature(const char* name) {
    auto found = emu::registry().find(name);
    return found == emu::registry().end() ? "" : found->second.signature.c_str();
}

// kernel<<<grid, block>>>(args...): returns 0, or 1 if no kernel has that name.
int emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz,
                      unsigned bx, unsigned by, unsigned bz, void** args) {
    auto found = emu::registry().find(name);
    if (found == emu::registry().end()) return 1;
    const emu::Kernel& kernel = found->second;
    const dim3 grid{gx, gy, gz}, block{bx, by, bz};
    const unsigned threads = bx * by * bz;
    std::barrier<> barrier(threads);
    emu::block_barrier = &barrier;
    std::vector<std::thread> workers;
    for (unsigned t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            gridDim = grid;
            blockDim = block;
            threadIdx = {t % bx, (t / bx) % by, t / (bx * by)};
            for (unsigned z = 0; z < gz; ++z)
                for (unsigned y = 0; y < gy; ++y)
                    for (unsigned x = 0; x < gx; ++x) {
                        blockIdx = {x, y, z};
                        kernel.call(args);
                        barrier.arrive_and_wait();  // the block is finished before the next starts
                    }
        });
    }
    for (auto& worker : workers) worker.join();
    emu::block_barrier = nullptr;
    return 0;
}
}
