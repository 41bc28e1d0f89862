// The C++ half of test_alloc_faults: the global operator new and delete of the test
// executable, so that every C++ allocation of the process (pacs/, DCMTK's shared libraries,
// the C++ standard library) goes through the same countdown as malloc and friends. The
// executable's definitions replace the standard library's for every shared library the
// process loads (the dynamic linker finds the executable's first).
//
// An armed failure throws std::bad_alloc, or returns NULL from the nothrow forms, as an
// exhausted heap does. The memory itself comes from the real malloc (not the wrapped one,
// which would count the allocation twice), and every delete frees it.
#include <dlfcn.h>
#include <link.h>
#include <unwind.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
void *__real_malloc(size_t n);
// test_alloc_faults.c: 1 when this allocation is to fail. `throwing`: a failure would throw
// (rather than return NULL); `caller`: the return address of the operator new.
int rd_alloc_fault_now(int throwing, const void *caller);
int rd_alloc_fault_in_destructor(void);
int rd_alloc_fault_in_dcmtk(const void *caller);
}

namespace
{

// The name of the function `ip` is in, when it has a dynamic symbol that covers it ("" when
// none does: a local function), and its module.
const char *function_at(uintptr_t ip, const char **module)
{
    Dl_info info;
    void *entry = nullptr;
    *module = "";
    if (!ip || !dladdr1(reinterpret_cast<void *>(ip - 1), &info, &entry, RTLD_DL_SYMENT))
        return "";
    const ElfW(Sym) *sym = static_cast<const ElfW(Sym) *>(entry);
    *module = info.dli_fname ? info.dli_fname : "";
    if (!info.dli_sname || !sym ||
        ip - 1 - reinterpret_cast<uintptr_t>(info.dli_saddr) >= sym->st_size)
        return "";
    return info.dli_sname;
}

_Unwind_Reason_Code find_destructor(struct _Unwind_Context *ctx, void *arg)
{
    const char *module;
    const char *fn = function_at(_Unwind_GetIP(ctx), &module);
    // Itanium C++ ABI: a destructor's mangled name ends in D0Ev, D1Ev or D2Ev.
    size_t n = strlen(fn);
    if (n >= 4 && fn[n - 4] == 'D' && fn[n - 3] >= '0' && fn[n - 3] <= '2' && fn[n - 2] == 'E' &&
        fn[n - 1] == 'v') {
        *static_cast<int *>(arg) = 1;
        return _URC_END_OF_STACK;
    }
    return _URC_NO_REASON;
}

// Walks up from the frame that called operator new (`caller`), past the C++ runtime's own
// frames (a std::string growing, say), to the first frame of the code whose allocation it
// is; `dcmtk` says whether that code is one of DCMTK's libraries.
struct caller_walk {
    uintptr_t caller;
    bool found;
    int dcmtk;
};

_Unwind_Reason_Code find_owner(struct _Unwind_Context *ctx, void *arg)
{
    caller_walk *w = static_cast<caller_walk *>(arg);
    uintptr_t ip = _Unwind_GetIP(ctx);
    const char *module;
    if (!w->found) {
        w->found = ip == w->caller;
        if (!w->found)
            return _URC_NO_REASON;
    }
    function_at(ip, &module);
    if (strstr(module, "libstdc++") || strstr(module, "libgcc"))
        return _URC_NO_REASON;
    w->dcmtk = strstr(module, "/libdcm") || strstr(module, "/libof") || strstr(module, "/libi2d");
    return _URC_END_OF_STACK;
}

void *allocate(size_t n, int throwing, const void *caller)
{
    if (rd_alloc_fault_now(throwing, caller))
        return nullptr;
    return __real_malloc(n ? n : 1);
}

void *allocate_aligned(size_t n, std::align_val_t al, int throwing, const void *caller)
{
    void *p = nullptr;
    size_t a = static_cast<size_t>(al);
    if (rd_alloc_fault_now(throwing, caller))
        return nullptr;
    if (a < sizeof(void *))
        a = sizeof(void *);
    return posix_memalign(&p, a, n ? n : 1) == 0 ? p : nullptr;
}

void *or_throw(void *p)
{
    if (!p)
        throw std::bad_alloc();
    return p;
}

} // namespace

// Whether a destructor is on the stack: a destructor is noexcept, so a bad_alloc thrown
// inside it ends the process (std::terminate) whatever its callers do, and DCMTK's SR
// document tree allocates while it is destroyed (DSRTree::clear makes a cursor, whose
// std::deque allocates). Such an allocation is not failed by throwing (see the test).
// Functions without a dynamic symbol (the executable's local ones) are not seen; DCMTK's
// and the C++ library's, where the destructors that allocate are, all have one.
int rd_alloc_fault_in_destructor(void)
{
    int found = 0;
    _Unwind_Backtrace(find_destructor, &found);
    return found;
}

// Whether an allocation is DCMTK's own: the first caller of the operator new at `caller`,
// past the C++ runtime, is in one of DCMTK's libraries.
int rd_alloc_fault_in_dcmtk(const void *caller)
{
    caller_walk w = {reinterpret_cast<uintptr_t>(caller), false, 0};
    _Unwind_Backtrace(find_owner, &w);
    return w.dcmtk;
}

#define CALLER __builtin_return_address(0)

void *operator new(size_t n)
{
    return or_throw(allocate(n, 1, CALLER));
}

void *operator new[](size_t n)
{
    return or_throw(allocate(n, 1, CALLER));
}

void *operator new(size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n, 0, CALLER);
}

void *operator new[](size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n, 0, CALLER);
}

void *operator new(size_t n, std::align_val_t al)
{
    return or_throw(allocate_aligned(n, al, 1, CALLER));
}

void *operator new[](size_t n, std::align_val_t al)
{
    return or_throw(allocate_aligned(n, al, 1, CALLER));
}

void *operator new(size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, al, 0, CALLER);
}

void *operator new[](size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, al, 0, CALLER);
}

void operator delete(void *p) noexcept
{
    std::free(p);
}

void operator delete[](void *p) noexcept
{
    std::free(p);
}

void operator delete(void *p, size_t) noexcept
{
    std::free(p);
}

void operator delete[](void *p, size_t) noexcept
{
    std::free(p);
}

void operator delete(void *p, const std::nothrow_t &) noexcept
{
    std::free(p);
}

void operator delete[](void *p, const std::nothrow_t &) noexcept
{
    std::free(p);
}

void operator delete(void *p, std::align_val_t) noexcept
{
    std::free(p);
}

void operator delete[](void *p, std::align_val_t) noexcept
{
    std::free(p);
}

void operator delete(void *p, size_t, std::align_val_t) noexcept
{
    std::free(p);
}

void operator delete[](void *p, size_t, std::align_val_t) noexcept
{
    std::free(p);
}

void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
    std::free(p);
}

void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
    std::free(p);
}
