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
#include <unwind.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" {
void *__real_malloc(size_t n);
// test_alloc_faults.c: 1 when this allocation is to fail. `throwing`: a failure would throw
// (rather than return NULL), so it must not fail inside a destructor (see below).
int rd_alloc_fault_now(int throwing);
int rd_alloc_fault_in_destructor(void);
}

namespace
{

_Unwind_Reason_Code find_destructor(struct _Unwind_Context *ctx, void *arg)
{
    Dl_info info;
    uintptr_t ip = _Unwind_GetIP(ctx);
    if (ip && dladdr(reinterpret_cast<void *>(ip - 1), &info) && info.dli_sname) {
        // Itanium C++ ABI: a destructor's mangled name ends in D0Ev, D1Ev or D2Ev.
        size_t n = strlen(info.dli_sname);
        const char *tail = info.dli_sname + (n >= 4 ? n - 4 : 0);
        if (n >= 4 && tail[0] == 'D' && tail[1] >= '0' && tail[1] <= '2' && tail[2] == 'E' &&
            tail[3] == 'v') {
            *static_cast<int *>(arg) = 1;
            return _URC_END_OF_STACK;
        }
    }
    return _URC_NO_REASON;
}

void *allocate(size_t n, int throwing)
{
    if (rd_alloc_fault_now(throwing))
        return nullptr;
    return __real_malloc(n ? n : 1);
}

void *allocate_aligned(size_t n, std::align_val_t al, int throwing)
{
    void *p = nullptr;
    size_t a = static_cast<size_t>(al);
    if (rd_alloc_fault_now(throwing))
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
// std::deque allocates). Such an allocation is not failed by throwing (see the test). Only
// the frames of functions with a dynamic symbol are seen: DCMTK's and the C++ library's
// (the test's own code has none), which is where the destructors that allocate are.
int rd_alloc_fault_in_destructor(void)
{
    int found = 0;
    _Unwind_Backtrace(find_destructor, &found);
    return found;
}

void *operator new(size_t n)
{
    return or_throw(allocate(n, 1));
}

void *operator new[](size_t n)
{
    return or_throw(allocate(n, 1));
}

void *operator new(size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n, 0);
}

void *operator new[](size_t n, const std::nothrow_t &) noexcept
{
    return allocate(n, 0);
}

void *operator new(size_t n, std::align_val_t al)
{
    return or_throw(allocate_aligned(n, al, 1));
}

void *operator new[](size_t n, std::align_val_t al)
{
    return or_throw(allocate_aligned(n, al, 1));
}

void *operator new(size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, al, 0);
}

void *operator new[](size_t n, std::align_val_t al, const std::nothrow_t &) noexcept
{
    return allocate_aligned(n, al, 0);
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
