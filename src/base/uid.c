#include "radraft/uid.h"

#include <stddef.h>

#include "radraft/limits.h"

int rd_uid_valid(const char *uid)
{
    size_t n = 0, comp = 0; /* characters so far; digits of the current component */
    int leading_zero = 0;
    if (!uid)
        return 0;
    for (const char *p = uid; *p; p++, n++) {
        if (n >= RD_UID_MAX)
            return 0;
        if (*p == '.') {
            if (comp == 0)
                return 0; /* an empty component: leading dot or two dots */
            comp = 0;
        } else if (*p >= '0' && *p <= '9') {
            if (comp == 1 && leading_zero)
                return 0; /* "01": only "0" itself may start with a zero */
            leading_zero = comp == 0 && *p == '0';
            comp++;
        } else {
            return 0;
        }
    }
    return comp > 0;
}
