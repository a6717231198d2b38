/* SHA-256 of two equal-length messages at once (see sha256x2.c). */
#ifndef BACKUPSVC_SHA256X2_H
#define BACKUPSVC_SHA256X2_H

#include <stddef.h>
#include <stdint.h>

/* Whether this CPU runs sha256x2() (x86-64 with the SHA extensions). */
int sha256x2_available(void);

/* The digests of a[0:length] and b[0:length]; only if sha256x2_available(). */
void sha256x2(const unsigned char *a, const unsigned char *b, size_t length,
              unsigned char digest_a[32], unsigned char digest_b[32]);

#endif
