/*
 * argon2id.h — BLAKE2b (RFC 7693) and argon2id (RFC 9106, version 0x13)
 * for mamori-cp.dll's break-glass check while the agent is down (issue 14
 * item 8): recovery codes at rest are argon2id with a salt per code
 * (internal/mfabundle HashCodeKDF), and LogonUI gets neither a Go runtime
 * nor libargon2. Our own implementation, written from the RFCs; checked
 * against their test vectors and against golang.org/x/crypto/argon2 on
 * random inputs (agent/credprov kdf_test.go), and compiled for Linux with
 * -fsanitize=address,undefined like cpcore.c. No Windows header.
 *
 * Single-threaded: lanes (p) are filled one after the other, which the
 * RFC allows (a segment reads other lanes only in finished slices).
 */
#ifndef MAMORI_ARGON2ID_H
#define MAMORI_ARGON2ID_H

#include <stddef.h>
#include <stdint.h>

/* Bounds: internal/mfabundle parseCodeKDF's, so a hostile file cannot make
 * LogonUI spend more than one 64 MiB, 8-pass run on a string. */
#define CP_KDF_MIN_M 8
#define CP_KDF_MAX_M (64 * 1024) /* KiB */
#define CP_KDF_MAX_T 8
#define CP_KDF_MAX_P 4
#define CP_KDF_MAX_LEN 256 /* bytes of the whole string */
#define CP_KDF_MIN_SALT 8
#define CP_KDF_MAX_SALT 192 /* more cannot fit in CP_KDF_MAX_LEN */
#define CP_KDF_MIN_KEY 16
#define CP_KDF_MAX_KEY 64

/* cp_blake2b: BLAKE2b with outlen 1..64 bytes and an optional key of
 * 0..64 bytes. 0, or -1 for lengths out of range. */
int cp_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen);

/* cp_argon2id_raw: argon2id version 0x13 with secret K and associated data
 * X (either may be empty), t passes, m KiB of memory and p lanes, into out
 * (outlen 4..1024 bytes). The memory (m KiB, rounded down to a multiple of
 * 4p as RFC 9106 says) is allocated once, wiped and freed before it
 * returns. Parameters outside the bounds above, m < 8p (which RFC 9106
 * forbids; golang.org/x/crypto rounds it up instead), a salt shorter than
 * 8 bytes or an allocation failure: -1 and out untouched. 0 on success. */
int cp_argon2id_raw(uint8_t *out, size_t outlen, const uint8_t *pwd, size_t pwdlen, const uint8_t *salt, size_t saltlen,
		    const uint8_t *secret, size_t secretlen, const uint8_t *ad, size_t adlen, uint32_t t, uint32_t m,
		    uint32_t p);

/* A parsed "$argon2id$v=19$m=M,t=T,p=P$SALT$KEY" (SALT and KEY unpadded
 * standard base64, strict: no padding, no stray bits). */
struct cp_kdf {
	uint32_t m, t, p;
	uint8_t salt[CP_KDF_MAX_SALT];
	size_t saltlen;
	uint8_t key[CP_KDF_MAX_KEY];
	size_t keylen;
};

/* cp_kdf_parse reads s (n bytes, no NUL needed) exactly as
 * internal/mfabundle parseCodeKDF does: at most CP_KDF_MAX_LEN bytes, six
 * '$' fields, v=19, m/t/p in decimal without sign or leading zero and
 * within the bounds, salt of at least 8 and key of 16..64 bytes. 0, or -1
 * for anything else. */
int cp_kdf_parse(const char *s, size_t n, struct cp_kdf *out);

/* cp_kdf_cost is the work a parsed string asks for, in KiB-passes (m*t):
 * what cp_bg_take budgets per check. */
uint64_t cp_kdf_cost(const struct cp_kdf *k);

/* cp_kdf_verify checks the normalised code (len bytes) against a parsed
 * string, comparing in constant time: 1 on a match, 0 when not, -1 when
 * the KDF refused or failed. It does not check the tag byte (the caller
 * does, cheaply, before it). */
int cp_kdf_verify(const struct cp_kdf *k, const char *code, size_t len);

/* cp_wipe clears n bytes in a way the compiler keeps. */
void cp_wipe(void *p, size_t n);

#endif /* MAMORI_ARGON2ID_H */
