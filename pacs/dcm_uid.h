// radraft — private to pacs/: a UID attribute read as it was sent.
#ifndef RADRAFT_PACS_DCM_UID_H
#define RADRAFT_PACS_DCM_UID_H

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>

#include <string>

// DCMTK repairs a UID as it reads it: every space goes ("1.2 3" reads as "1.23") and the value
// ends at its first NUL ("1.2\0/x" reads as "1.2"), so a hostile value could alias another
// instance. This returns the value's bytes as they are in the dataset, less the one trailing NUL
// that PS3.5 allows as padding; a control character or a byte over 0x7e becomes '?', so that
// the result fails rd_uid_valid and can be shown in a message. Absent or empty: "". Call it
// before anything reads the attribute as a string (that repairs the value in place).
inline std::string raw_uid(DcmItem *ds, const DcmTagKey &tag)
{
    DcmElement *el = NULL;
    if (ds->findAndGetElement(tag, el, OFFalse).bad() || !el)
        return std::string();
    Uint32 len = el->getLengthField();
    if (len == 0)
        return std::string();
    if (len > 128) // far longer than a UID: invalid however it ends
        len = 128;
    std::string v(len, '\0');
    if (el->getPartialValue(&v[0], 0, len).bad())
        return std::string("?");
    if (v.back() == '\0' && len == el->getLengthField())
        v.pop_back();
    for (char &c : v)
        if (c < 0x20 || c > 0x7e)
            c = '?';
    return v;
}

#endif
