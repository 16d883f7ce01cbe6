#ifndef TINY_H
#define TINY_H

/* Returns a greeting naming the library and its version. */
const char *tiny_greeting(void);

#endif
