// radraft — private to pacs/: the first failure of a sequence of steps, so that a builder of
// a DICOM dataset or SR tree can make every call and check once at the end, reporting what
// failed first (later failures are usually its consequences).
#ifndef RADRAFT_PACS_FIRST_ERROR_H
#define RADRAFT_PACS_FIRST_ERROR_H

#include <string>

class first_error
{
  public:
    void fail(const std::string &m)
    {
        if (ok_) {
            ok_ = false;
            msg_ = m;
        }
    }
    bool ok() const
    {
        return ok_;
    }
    const std::string &msg() const
    {
        return msg_;
    }

  private:
    bool ok_ = true;
    std::string msg_;
};

#endif
