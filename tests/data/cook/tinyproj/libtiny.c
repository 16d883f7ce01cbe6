#include <stdio.h>
#include "tiny.h"

const char *tiny_greeting(void)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "tiny %s says hello (%s)", TINY_VERSION, __FILE__);
    return buf;
}
