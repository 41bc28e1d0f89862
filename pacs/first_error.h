// radraft — private to pacs/: the first failure of a sequence of steps, so that a builder of
// a DICOM dataset or SR tree can make every call and check once at the end, reporting what
// failed first (later failures are usually its consequences).
#ifndef RADRAFT_PACS_FIRST_ERROR_H
#define RADRAFT_PACS_FIRST_ERROR_H

#include <string>

#include "radraft/error.h"

class first_error
{
  public:
    // `nomem`: the failure was memory running out (DCMTK's EC_MemoryExhausted).
    void fail(const std::string &m, bool nomem = false)
    {
        if (ok_) {
            ok_ = false;
            nomem_ = nomem;
            msg_ = m;
        }
    }
    bool ok() const
    {
        return ok_;
    }
    // The status of the first failure: RD_E_NOMEM when memory ran out, else `otherwise`.
    rd_status status(rd_status otherwise) const
    {
        return nomem_ ? RD_E_NOMEM : otherwise;
    }
    const std::string &msg() const
    {
        return msg_;
    }

  private:
    bool ok_ = true;
    bool nomem_ = false;
    std::string msg_;
};

#endif
