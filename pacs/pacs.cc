#include "radraft/pacs.h"

#include <dcmtk/dcmdata/dcuid.h>

extern "C" const char *rd_pacs_dcmtk_version(void)
{
    return OFFIS_DCMTK_VERSION_STRING;
}
