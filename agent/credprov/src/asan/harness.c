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
 * the file), 9 used line (hash\0user\0service), 10 argon2id string
 * (string\0code: -1 when cp_kdf_parse refuses it, else cp_kdf_verify of
 * the code as given), 11 raw argon2id (eight u32: t, m, p, outlen and the
 * lengths of password, salt, secret, data; then those bytes; prints the
 * tag in hex, or -1), 12 BLAKE2b (u32 outlen, u32 keylen, key, message;
 * hex or -1), 13 the BLAKE2b self-test of RFC 7693 Appendix E (1 when its
 * grand hash matches).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../argon2id.h"
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
		char *keep = malloc(n + 1), hash[CP_BG_MAX_HASH + 1];
		size_t kl = 0;
		long r = cp_bg_take((const char *)in, n, "tanaka", "ABCDEFGHJK", keep, n + 1, &kl, hash);
		if (r >= 0 && kl > n + 1)
			abort();
		if (r == 1 && (strlen(hash) > CP_BG_MAX_HASH || cp_used_line(NULL, 0, hash, "u", "s", "-", 1) != 0))
			abort(); /* a found hash is bounded; a 0 cap writes nothing */
		free(keep);
		return r;
	}
	case 9: {
		char *z = malloc(n + 1), out[512];
		const char *h, *u, *s;
		long r;
		memcpy(z, in, n);
		z[n] = 0;
		r = split3(z, n + 1, &h, &u, &s) ? -2 : (long)cp_used_line(out, sizeof out, h, u, s, "-", 1700000000);
		free(z);
		return r;
	}
	case 10: {
		const char *nul = memchr(in, 0, n);
		char *code;
		struct cp_kdf k;
		long r;
		if (nul == NULL)
			return -2;
		/* The string alone, in a buffer of exactly its length. */
		{
			size_t sl = (size_t)(nul - (const char *)in);
			char *s = malloc(sl ? sl : 1);
			memcpy(s, in, sl);
			r = cp_kdf_parse(s, sl, &k);
			free(s);
		}
		if (r != 0)
			return -1;
		code = malloc(n - (size_t)(nul - (const char *)in));
		memcpy(code, nul + 1, n - (size_t)(nul - (const char *)in) - 1);
		r = cp_kdf_verify(&k, code, n - (size_t)(nul - (const char *)in) - 1);
		free(code);
		return r;
	}
	}
	return -3;
}

static uint32_t rd32le(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

/* kinds 11 and 12: hex into hex (2 * 1024 + 1 bytes); -1 when refused. */
static int hexout(int kind, const uint8_t *in, size_t n, char *hex)
{
	uint8_t out[1024];
	size_t outlen, i;
	int r;
	if (kind == 11) {
		uint32_t v[8];
		const uint8_t *p = in + 32;
		size_t total = 0;
		if (n < 32)
			return -1;
		for (i = 0; i < 8; i++)
			v[i] = rd32le(in + 4 * i);
		for (i = 4; i < 8; i++)
			total += v[i];
		if (total != n - 32 || v[3] > sizeof out)
			return -1;
		outlen = v[3];
		r = cp_argon2id_raw(out, outlen, p, v[4], p + v[4], v[5], p + v[4] + v[5], v[6], p + v[4] + v[5] + v[6], v[7],
				    v[0], v[1], v[2]);
	} else {
		uint32_t kl;
		if (n < 8)
			return -1;
		outlen = rd32le(in), kl = rd32le(in + 4);
		if (kl > n - 8 || outlen > sizeof out)
			return -1;
		r = cp_blake2b(out, outlen, in + 8, kl, in + 8 + kl, n - 8 - kl);
	}
	if (r != 0)
		return -1;
	for (i = 0; i < outlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", out[i]);
	hex[2 * outlen] = 0;
	return 0;
}

/* RFC 7693 Appendix E: BLAKE2b of the digests of generated messages. */
static void selftest_seq(uint8_t *out, size_t len, uint32_t seed)
{
	uint32_t a = 0xDEAD4BAD * seed, b = 1, t;
	size_t i;
	for (i = 0; i < len; i++) {
		t = a + b, a = b, b = t;
		out[i] = (uint8_t)(t >> 24);
	}
}

static int b2_selftest(void)
{
	static const uint8_t want[32] = {0xC2, 0x3A, 0x78, 0x00, 0xD9, 0x81, 0x23, 0xBD, 0x10, 0xF5, 0x06,
					 0xC6, 0x1E, 0x29, 0xDA, 0x56, 0x03, 0xD7, 0x63, 0xB8, 0xBB, 0xAD,
					 0x2E, 0x73, 0x7F, 0x5E, 0x76, 0x5A, 0x7B, 0xCC, 0xD4, 0x75};
	static const size_t mdlen[4] = {20, 32, 48, 64}, inlen[6] = {0, 3, 128, 129, 255, 1024};
	uint8_t in[1024], md[64], key[64], all[2 * 4 * 6 * 64], got[32];
	size_t i, j, o = 0;
	for (i = 0; i < 4; i++)
		for (j = 0; j < 6; j++) {
			selftest_seq(in, inlen[j], (uint32_t)inlen[j]);
			cp_blake2b(md, mdlen[i], NULL, 0, in, inlen[j]);
			memcpy(all + o, md, mdlen[i]), o += mdlen[i];
			selftest_seq(key, mdlen[i], (uint32_t)mdlen[i]);
			cp_blake2b(md, mdlen[i], key, mdlen[i], in, inlen[j]);
			memcpy(all + o, md, mdlen[i]), o += mdlen[i];
		}
	cp_blake2b(got, 32, NULL, 0, all, o);
	return memcmp(got, want, 32) == 0;
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
		if (hdr[0] == 11 || hdr[0] == 12) {
			static char hex[2 * 1024 + 1];
			if (hexout(hdr[0], in, n, hex) == 0)
				printf("%d %s\n", hdr[0], hex);
			else
				printf("%d -1\n", hdr[0]);
		} else if (hdr[0] == 13) {
			printf("%d %d\n", hdr[0], b2_selftest());
		} else {
			printf("%d %ld\n", hdr[0], one(hdr[0], in, n));
		}
		free(in);
	}
	return 0;
}
