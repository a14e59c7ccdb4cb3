/*
 * harness.c — cpcore.c on Linux, built with -fsanitize=address,undefined
 * by asan_test.go and fed hostile and fuzzed input (never shipped).
 *
 * stdin: records of u8 kind, u32 little-endian length, that many bytes.
 * Each input is copied into a buffer of exactly its length, so a read one
 * byte past it is an ASan report. stdout: one line per record,
 * "<kind> <result>". A sanitizer finding aborts the process.
 *
 * kinds: 1 request (op, method, then user\0service\0code), 2 answer
 * (op, then the answer), 3 UTF-16 → UTF-8, 4 user split, 5 code check and
 * normalisation, 6 unpack a serialization, 7 pack then unpack
 * (domain\0user\0password as UTF-16 units, must round-trip exactly),
 * 8 break-glass take (user "tanaka", code "ABCDE-FGHJK", the input as
 * the file), 9 used line (hash\0user\0service).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpcore.h"

static int split3(const char *in, size_t n, const char **a, const char **b, const char **c)
{
	const char *p1 = memchr(in, 0, n), *p2;
	if (p1 == NULL)
		return -1;
	p2 = memchr(p1 + 1, 0, n - (size_t)(p1 + 1 - in));
	if (p2 == NULL)
		return -1;
	*a = in, *b = p1 + 1, *c = p2 + 1;
	return memchr(*c, 0, n - (size_t)(*c - in)) ? 0 : -1;
}

static uint16_t *units(const uint8_t *in, size_t n, size_t *count)
{
	size_t i, k = n / 2;
	uint16_t *u = malloc((k + 1) * sizeof *u);
	for (i = 0; i < k; i++)
		u[i] = (uint16_t)(in[2 * i] | in[2 * i + 1] << 8);
	u[k] = 0;
	*count = k;
	return u;
}

static long one(int kind, const uint8_t *in, size_t n)
{
	switch (kind) {
	case 1: {
		uint8_t out[CP_MAX_REQUEST];
		const char *u, *s, *c;
		char *z;
		long r;
		if (n < 2)
			return -2;
		z = malloc(n - 2 + 1);
		memcpy(z, in + 2, n - 2);
		z[n - 2] = 0;
		r = split3(z, n - 2 + 1, &u, &s, &c) ? -2 : (long)cp_request(out, sizeof out, in[0], in[1], u, s, "", c);
		free(z);
		return r;
	}
	case 2:
		return n < 1 ? -2 : cp_answer(in + 1, n - 1, in[0]);
	case 3: {
		size_t k;
		uint16_t *u = units(in, n, &k);
		char out[64];
		long r = cp_utf16_to_utf8(u, k, out, sizeof out);
		free(u);
		return r;
	}
	case 4: {
		size_t k;
		uint16_t *u = units(in, n, &k), d[CP_MAX_USER + 1], name[CP_MAX_USER + 1];
		long r = cp_split_user(u, d, CP_MAX_USER + 1, name, CP_MAX_USER + 1);
		if (r == 0 && (cp_wlen(name, CP_MAX_USER + 1) == 0 || cp_wlen(name, CP_MAX_USER + 1) > CP_MAX_USER))
			abort(); /* a name must come out non-empty and bounded */
		free(u);
		return r;
	}
	case 5: {
		char *z = malloc(n + 1), norm[11];
		long r;
		memcpy(z, in, n);
		z[n] = 0;
		r = cp_check_code(z) * 10 + cp_normalise_code(z, norm);
		free(z);
		return r;
	}
	case 6: {
		struct cp_kerb k;
		long r = cp_unpack_kerb(in, n, &k);
		if (r == 0) {
			volatile uint8_t sum = 0;
			size_t i;
			for (i = 0; i < 2 * k.dlen; i++)
				sum ^= k.domain[i];
			for (i = 0; i < 2 * k.ulen; i++)
				sum ^= k.user[i];
			for (i = 0; i < 2 * k.plen; i++)
				sum ^= k.password[i];
			(void)sum;
		}
		return r;
	}
	case 7: {
		const uint8_t *f[3];
		size_t len[3], k = 0, start = 0, i, size;
		uint16_t *u[3];
		struct cp_kerb kb;
		uint8_t *buf;
		for (i = 0; i + 1 < n && k < 3; i += 2)
			if (in[i] == 0 && in[i + 1] == 0) {
				f[k] = in + start, len[k] = (i - start) / 2, k++, start = i + 2;
			}
		if (k != 3)
			return -2;
		for (i = 0; i < 3; i++) {
			size_t c;
			u[i] = units(f[i], 2 * len[i], &c);
		}
		size = cp_kerb_size(len[0], len[1], len[2]);
		buf = malloc(size ? size : 1);
		if (size == 0 || cp_pack_kerb(buf, size, 2, u[0], len[0], u[1], len[1], u[2], len[2]) != size ||
		    cp_unpack_kerb(buf, size, &kb) != 0 || kb.dlen != len[0] || kb.ulen != len[1] || kb.plen != len[2] ||
		    memcmp(kb.domain, f[0], 2 * len[0]) || memcmp(kb.user, f[1], 2 * len[1]) ||
		    memcmp(kb.password, f[2], 2 * len[2]))
			abort(); /* what is packed must unpack to exactly the same */
		free(buf);
		for (i = 0; i < 3; i++)
			free(u[i]);
		return (long)size;
	}
	case 8: {
		char *keep = malloc(n + 1), hash[65];
		size_t kl = 0;
		long r = cp_bg_take((const char *)in, n, "tanaka", "ABCDEFGHJK", keep, n + 1, &kl, hash);
		if (r >= 0 && kl > n + 1)
			abort();
		free(keep);
		return r;
	}
	case 9: {
		char *z = malloc(n + 1), out[300];
		const char *h, *u, *s;
		long r;
		memcpy(z, in, n);
		z[n] = 0;
		r = split3(z, n + 1, &h, &u, &s) ? -2 : (long)cp_used_line(out, sizeof out, h, u, s, "-", 1700000000);
		free(z);
		return r;
	}
	}
	return -3;
}

int main(void)
{
	uint8_t hdr[5];
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fread(hdr, 1, 5, stdin) == 5) {
		size_t n = (size_t)hdr[1] | (size_t)hdr[2] << 8 | (size_t)hdr[3] << 16 | (size_t)hdr[4] << 24;
		uint8_t *in;
		if (n > (8u << 20))
			return 2;
		in = malloc(n ? n : 1);
		if (n && fread(in, 1, n, stdin) != n)
			return 2;
		printf("%d %ld\n", hdr[0], one(hdr[0], in, n));
		free(in);
	}
	return 0;
}
