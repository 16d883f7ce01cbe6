#include <stdio.h>
#include "tiny.h"

int main(void)
{
    puts(tiny_greeting());
    return 0;
}
