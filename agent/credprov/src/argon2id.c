/*
 * argon2id.c — see argon2id.h. Portable C99. Section numbers are RFC 7693's
 * (BLAKE2b) and RFC 9106's (argon2).
 */
#include "argon2id.h"

#include <stdlib.h>
#include <string.h>

/* memset through a volatile pointer: the compiler cannot know it is
 * memset, so it cannot drop the call as a dead store (and the wipe of
 * 1 MiB stays one fast memset). */
static void *(*const volatile wipe_fn)(void *, int, size_t) = memset;

void cp_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		wipe_fn(p, 0, n);
}

static uint64_t ld64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;
	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void st64(uint8_t *p, uint64_t v)
{
	int i;
	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void st32(uint8_t *p, uint32_t v)
{
	int i;
	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rotr64(uint64_t x, unsigned n) { return x >> n | x << (64 - n); }

/* ---- BLAKE2b (RFC 7693) ---- */

static const uint64_t b2_iv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
				  0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
				  0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

/* Message word schedule, section 2.7 (rounds 10 and 11 reuse rows 0, 1). */
static const uint8_t b2_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0}};

struct b2 {
	uint64_t h[8];
	uint64_t t[2]; /* bytes compressed so far, 128-bit */
	uint8_t buf[128];
	size_t n, outlen;
};

/* Mixing function G, section 3.1 (rotations 32, 24, 16, 63). */
#define B2G(a, b, c, d, x, y)                                                                                      \
	do {                                                                                                       \
		v[a] = v[a] + v[b] + (x);                                                                          \
		v[d] = rotr64(v[d] ^ v[a], 32);                                                                    \
		v[c] = v[c] + v[d];                                                                                \
		v[b] = rotr64(v[b] ^ v[c], 24);                                                                    \
		v[a] = v[a] + v[b] + (y);                                                                          \
		v[d] = rotr64(v[d] ^ v[a], 16);                                                                    \
		v[c] = v[c] + v[d];                                                                                \
		v[b] = rotr64(v[b] ^ v[c], 63);                                                                    \
	} while (0)

/* Compression function F, section 3.2. */
static void b2_compress(struct b2 *s, const uint8_t block[128], int last)
{
	uint64_t v[16], m[16];
	int i;
	for (i = 0; i < 16; i++)
		m[i] = ld64(block + 8 * i);
	for (i = 0; i < 8; i++)
		v[i] = s->h[i], v[i + 8] = b2_iv[i];
	v[12] ^= s->t[0];
	v[13] ^= s->t[1];
	if (last)
		v[14] = ~v[14];
	for (i = 0; i < 12; i++) {
		const uint8_t *z = b2_sigma[i % 10];
		B2G(0, 4, 8, 12, m[z[0]], m[z[1]]);
		B2G(1, 5, 9, 13, m[z[2]], m[z[3]]);
		B2G(2, 6, 10, 14, m[z[4]], m[z[5]]);
		B2G(3, 7, 11, 15, m[z[6]], m[z[7]]);
		B2G(0, 5, 10, 15, m[z[8]], m[z[9]]);
		B2G(1, 6, 11, 12, m[z[10]], m[z[11]]);
		B2G(2, 7, 8, 13, m[z[12]], m[z[13]]);
		B2G(3, 4, 9, 14, m[z[14]], m[z[15]]);
	}
	for (i = 0; i < 8; i++)
		s->h[i] ^= v[i] ^ v[i + 8];
	cp_wipe(v, sizeof v);
	cp_wipe(m, sizeof m);
}

static void b2_count(struct b2 *s, size_t n)
{
	s->t[0] += n;
	if (s->t[0] < n)
		s->t[1]++;
}

static void b2_update(struct b2 *s, const uint8_t *in, size_t n)
{
	while (n > 0) {
		size_t k;
		/* The last block is compressed in b2_final: keep a full
		 * buffer until more input arrives. */
		if (s->n == 128) {
			b2_count(s, 128);
			b2_compress(s, s->buf, 0);
			s->n = 0;
		}
		k = 128 - s->n < n ? 128 - s->n : n;
		memcpy(s->buf + s->n, in, k);
		s->n += k, in += k, n -= k;
	}
}

static int b2_init(struct b2 *s, size_t outlen, const uint8_t *key, size_t keylen)
{
	int i;
	if (outlen == 0 || outlen > 64 || keylen > 64 || (keylen > 0 && key == NULL))
		return -1;
	memset(s, 0, sizeof *s);
	for (i = 0; i < 8; i++)
		s->h[i] = b2_iv[i];
	/* Parameter block, section 2.5: depth 1, fanout 1, key and digest
	 * lengths. */
	s->h[0] ^= 0x01010000ULL ^ (uint64_t)keylen << 8 ^ (uint64_t)outlen;
	s->outlen = outlen;
	if (keylen > 0) {
		uint8_t block[128];
		memset(block, 0, sizeof block);
		memcpy(block, key, keylen);
		b2_update(s, block, 128);
		cp_wipe(block, sizeof block);
	}
	return 0;
}

static void b2_final(struct b2 *s, uint8_t *out)
{
	uint8_t full[64];
	int i;
	b2_count(s, s->n);
	memset(s->buf + s->n, 0, 128 - s->n);
	b2_compress(s, s->buf, 1);
	for (i = 0; i < 8; i++)
		st64(full + 8 * i, s->h[i]);
	memcpy(out, full, s->outlen);
	cp_wipe(full, sizeof full);
	cp_wipe(s, sizeof *s);
}

int cp_blake2b(uint8_t *out, size_t outlen, const uint8_t *key, size_t keylen, const uint8_t *in, size_t inlen)
{
	struct b2 s;
	if (out == NULL || (inlen > 0 && in == NULL) || b2_init(&s, outlen, key, keylen) != 0)
		return -1;
	if (inlen > 0)
		b2_update(&s, in, inlen);
	b2_final(&s, out);
	return 0;
}

/* ---- argon2id (RFC 9106) ---- */

#define A2_VERSION 0x13
#define A2_TYPE_ID 2
#define A2_WORDS 128 /* 64-bit words in a 1 KiB block */
#define A2_SYNC 4    /* slices per pass */

typedef struct {
	uint64_t v[A2_WORDS];
} block;

/* H' (section 3.3): the variable-length hash of (LE32(outlen) || in1 ||
 * in2), outlen up to 1024 here. */
static void hprime(uint8_t *out, size_t outlen, const uint8_t *in1, size_t n1, const uint8_t *in2, size_t n2)
{
	struct b2 s;
	uint8_t len[4], v[64];
	st32(len, (uint32_t)outlen);
	if (outlen <= 64) {
		b2_init(&s, outlen, NULL, 0);
		b2_update(&s, len, 4);
		b2_update(&s, in1, n1);
		if (n2)
			b2_update(&s, in2, n2);
		b2_final(&s, out);
		return;
	}
	/* r = ceil(outlen/32) - 2 blocks of 64 bytes, of which the first 32
	 * are taken, then the last outlen - 32r bytes whole. */
	{
		size_t r = (outlen + 31) / 32 - 2, i;
		b2_init(&s, 64, NULL, 0);
		b2_update(&s, len, 4);
		b2_update(&s, in1, n1);
		if (n2)
			b2_update(&s, in2, n2);
		b2_final(&s, v);
		memcpy(out, v, 32);
		for (i = 1; i < r; i++) {
			b2_init(&s, 64, NULL, 0);
			b2_update(&s, v, 64);
			b2_final(&s, v);
			memcpy(out + 32 * i, v, 32);
		}
		b2_init(&s, outlen - 32 * r, NULL, 0);
		b2_update(&s, v, 64);
		b2_final(&s, out + 32 * r);
		cp_wipe(v, sizeof v);
	}
}

/* GB (section 3.6): BLAKE2b's G with the additions replaced by
 * a + b + 2 * lo32(a) * lo32(b). */
static uint64_t fbla(uint64_t a, uint64_t b) { return a + b + 2 * (uint64_t)(uint32_t)a * (uint32_t)b; }

#define GB(a, b, c, d)                                                                                             \
	do {                                                                                                       \
		a = fbla(a, b);                                                                                    \
		d = rotr64(d ^ a, 32);                                                                             \
		c = fbla(c, d);                                                                                    \
		b = rotr64(b ^ c, 24);                                                                             \
		a = fbla(a, b);                                                                                    \
		d = rotr64(d ^ a, 16);                                                                             \
		c = fbla(c, d);                                                                                    \
		b = rotr64(b ^ c, 63);                                                                             \
	} while (0)

/* P (section 3.6) on sixteen words: eight 16-byte registers, each two
 * consecutive words. */
#define PERM(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15)                                 \
	do {                                                                                                       \
		GB(v0, v4, v8, v12);                                                                               \
		GB(v1, v5, v9, v13);                                                                               \
		GB(v2, v6, v10, v14);                                                                              \
		GB(v3, v7, v11, v15);                                                                              \
		GB(v0, v5, v10, v15);                                                                              \
		GB(v1, v6, v11, v12);                                                                              \
		GB(v2, v7, v8, v13);                                                                               \
		GB(v3, v4, v9, v14);                                                                               \
	} while (0)

/* Compression G (section 3.5): next = P-columns(P-rows(R)) ^ R with
 * R = x ^ y; with xor (passes after the first, version 0x13) the result
 * is XORed into next instead of replacing it. r and q are scratch blocks
 * of the run (wiped with its memory). */
static void compress(block *next, const block *x, const block *y, int xor, block *r, block *q)
{
	uint64_t *w = q->v;
	int i;
	for (i = 0; i < A2_WORDS; i++)
		r->v[i] = q->v[i] = x->v[i] ^ y->v[i];
	/* Rows: row i is registers 8i..8i+7, words 16i..16i+15. */
	for (i = 0; i < 8; i++) {
		uint64_t *s = w + 16 * i;
		PERM(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12], s[13], s[14], s[15]);
	}
	/* Columns: column i is registers i, i+8, ..., i+56: words 2i, 2i+1,
	 * 2i+16, 2i+17, ..., 2i+112, 2i+113. */
	for (i = 0; i < 8; i++) {
		uint64_t *s = w + 2 * i;
		PERM(s[0], s[1], s[16], s[17], s[32], s[33], s[48], s[49], s[64], s[65], s[80], s[81], s[96], s[97], s[112],
		     s[113]);
	}
	if (xor)
		for (i = 0; i < A2_WORDS; i++)
			next->v[i] ^= q->v[i] ^ r->v[i];
	else
		for (i = 0; i < A2_WORDS; i++)
			next->v[i] = q->v[i] ^ r->v[i];
}

static void block_from_bytes(block *b, const uint8_t *in)
{
	int i;
	for (i = 0; i < A2_WORDS; i++)
		b->v[i] = ld64(in + 8 * i);
}

struct a2 {
	block *mem;  /* blocks, then the scratch blocks below */
	block *r, *q, *tmp, *addr, *input, *zero;
	uint32_t lanes, lanelen, seglen, passes, blocks;
};

#define A2_SCRATCH 6

/* The address block for data-independent indexing (section 3.4.1.2):
 * G(0, G(0, input)) after the counter in input word 6 is incremented. */
static void next_addresses(struct a2 *a)
{
	a->input->v[6]++;
	compress(a->tmp, a->zero, a->input, 0, a->r, a->q);
	compress(a->addr, a->zero, a->tmp, 0, a->r, a->q);
}

static void fill_segment(struct a2 *a, uint32_t pass, uint32_t lane, uint32_t slice)
{
	/* argon2id: data-independent addressing in the first half of the
	 * first pass (section 3.4.1.3). */
	int indep = pass == 0 && slice < A2_SYNC / 2;
	uint32_t i = 0;
	if (indep) {
		memset(a->zero, 0, sizeof *a->zero);
		memset(a->input, 0, sizeof *a->input);
		a->input->v[0] = pass, a->input->v[1] = lane, a->input->v[2] = slice;
		a->input->v[3] = a->blocks, a->input->v[4] = a->passes, a->input->v[5] = A2_TYPE_ID;
	}
	if (pass == 0 && slice == 0) {
		i = 2; /* blocks 0 and 1 come from H0 */
		if (indep)
			next_addresses(a);
	}
	for (; i < a->seglen; i++) {
		uint32_t col = slice * a->seglen + i;
		uint32_t cur = lane * a->lanelen + col;
		uint32_t prev = col == 0 ? cur + a->lanelen - 1 : cur - 1;
		uint64_t rnd, x, y, area, start;
		uint32_t reflane, j1, j2;
		int same;
		if (indep) {
			if (i % A2_WORDS == 0)
				next_addresses(a);
			rnd = a->addr->v[i % A2_WORDS];
		} else {
			rnd = a->mem[prev].v[0];
		}
		j1 = (uint32_t)rnd, j2 = (uint32_t)(rnd >> 32);
		/* Section 3.4.2: which lane, then which block of it. */
		reflane = pass == 0 && slice == 0 ? lane : j2 % a->lanes;
		same = reflane == lane;
		if (pass == 0) {
			if (slice == 0 || same)
				area = (uint64_t)slice * a->seglen + i - 1;
			else
				area = (uint64_t)slice * a->seglen - (i == 0 ? 1 : 0);
			start = 0;
		} else {
			if (same)
				area = (uint64_t)a->lanelen - a->seglen + i - 1;
			else
				area = (uint64_t)a->lanelen - a->seglen - (i == 0 ? 1 : 0);
			start = slice == A2_SYNC - 1 ? 0 : (uint64_t)(slice + 1) * a->seglen;
		}
		x = (uint64_t)j1 * j1 >> 32;
		y = area * x >> 32;
		{
			uint64_t z = area - 1 - y;
			uint32_t refcol = (uint32_t)((start + z) % a->lanelen);
			compress(&a->mem[cur], &a->mem[prev], &a->mem[reflane * a->lanelen + refcol], pass > 0, a->r, a->q);
		}
	}
}

int cp_argon2id_raw(uint8_t *out, size_t outlen, const uint8_t *pwd, size_t pwdlen, const uint8_t *salt, size_t saltlen,
		    const uint8_t *secret, size_t secretlen, const uint8_t *ad, size_t adlen, uint32_t t, uint32_t m,
		    uint32_t p)
{
	struct a2 a;
	struct b2 s;
	uint8_t h0[72], w[4], bytes[1024];
	block acc;
	uint32_t pass, slice, lane, i;
	if (out == NULL || outlen < 4 || outlen > 1024 || t < 1 || t > CP_KDF_MAX_T || p < 1 || p > CP_KDF_MAX_P ||
	    m > CP_KDF_MAX_M || m < 8 * p || saltlen < CP_KDF_MIN_SALT || saltlen > 1024 || pwdlen > 1024 ||
	    secretlen > 64 || adlen > 1024 || (pwdlen && !pwd) || !salt || (secretlen && !secret) || (adlen && !ad))
		return -1;
	a.lanes = p, a.passes = t;
	a.blocks = m / (A2_SYNC * p) * (A2_SYNC * p);
	a.lanelen = a.blocks / p;
	a.seglen = a.lanelen / A2_SYNC;
	a.mem = calloc((size_t)a.blocks + A2_SCRATCH, sizeof(block));
	if (a.mem == NULL)
		return -1;
	a.r = a.mem + a.blocks, a.q = a.r + 1, a.tmp = a.r + 2, a.addr = a.r + 3, a.input = a.r + 4, a.zero = a.r + 5;

	/* H0 (section 3.2), 64 bytes; then 8 bytes for LE32(col), LE32(lane). */
	b2_init(&s, 64, NULL, 0);
#define A2_U32(x) (st32(w, (uint32_t)(x)), b2_update(&s, w, 4))
	A2_U32(p);
	A2_U32(outlen);
	A2_U32(m); /* as given, before rounding (section 3.2) */
	A2_U32(t);
	A2_U32(A2_VERSION);
	A2_U32(A2_TYPE_ID);
	A2_U32(pwdlen);
	if (pwdlen)
		b2_update(&s, pwd, pwdlen);
	A2_U32(saltlen);
	b2_update(&s, salt, saltlen);
	A2_U32(secretlen);
	if (secretlen)
		b2_update(&s, secret, secretlen);
	A2_U32(adlen);
	if (adlen)
		b2_update(&s, ad, adlen);
#undef A2_U32
	b2_final(&s, h0);

	for (lane = 0; lane < p; lane++)
		for (i = 0; i < 2; i++) {
			st32(h0 + 64, i);
			st32(h0 + 68, lane);
			hprime(bytes, sizeof bytes, h0, sizeof h0, NULL, 0);
			block_from_bytes(&a.mem[lane * a.lanelen + i], bytes);
		}
	for (pass = 0; pass < t; pass++)
		for (slice = 0; slice < A2_SYNC; slice++)
			for (lane = 0; lane < p; lane++)
				fill_segment(&a, pass, lane, slice);

	/* Final block C: the XOR of every lane's last block (section 3.2). */
	acc = a.mem[a.lanelen - 1];
	for (lane = 1; lane < p; lane++)
		for (i = 0; i < A2_WORDS; i++)
			acc.v[i] ^= a.mem[lane * a.lanelen + a.lanelen - 1].v[i];
	for (i = 0; i < A2_WORDS; i++)
		st64(bytes + 8 * i, acc.v[i]);
	hprime(out, outlen, bytes, sizeof bytes, NULL, 0);

	cp_wipe(a.mem, ((size_t)a.blocks + A2_SCRATCH) * sizeof(block));
	free(a.mem);
	cp_wipe(&acc, sizeof acc);
	cp_wipe(bytes, sizeof bytes);
	cp_wipe(h0, sizeof h0);
	return 0;
}

/* ---- the stored string ---- */

/* Strict unpadded standard base64 (Go's RawStdEncoding.Strict()): the
 * decoded length, or -1 (bad character, length 1 mod 4, stray bits, or
 * more than max bytes). */
static int b64(const char *s, size_t n, uint8_t *out, size_t max)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;
	if (n % 4 == 1)
		return -1;
	for (i = 0; i < n; i++) {
		char c = s[i];
		uint32_t d;
		if (c >= 'A' && c <= 'Z')
			d = (uint32_t)(c - 'A');
		else if (c >= 'a' && c <= 'z')
			d = (uint32_t)(c - 'a' + 26);
		else if (c >= '0' && c <= '9')
			d = (uint32_t)(c - '0' + 52);
		else if (c == '+')
			d = 62;
		else if (c == '/')
			d = 63;
		else
			return -1;
		acc = acc << 6 | d;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= max)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return acc != 0 ? -1 : (int)o;
}

/* A decimal number without sign or leading zero, at most 9 digits. */
static int decimal(const char *s, size_t n, uint32_t *v)
{
	size_t i;
	if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
		return -1;
	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (uint32_t)(s[i] - '0');
	}
	return 0;
}

/* The parameter field "m=M,t=T,p=P". */
static int params(const char *s, size_t n, struct cp_kdf *k)
{
	static const char *const names[3] = {"m=", "t=", "p="};
	uint32_t *vals[3];
	size_t off = 0;
	int i;
	vals[0] = &k->m, vals[1] = &k->t, vals[2] = &k->p;
	for (i = 0; i < 3; i++) {
		const char *end;
		size_t len;
		if (n - off < 2 || memcmp(s + off, names[i], 2) != 0)
			return -1;
		off += 2;
		end = i < 2 ? memchr(s + off, ',', n - off) : s + n;
		if (end == NULL)
			return -1;
		len = (size_t)(end - (s + off));
		if (decimal(s + off, len, vals[i]) != 0)
			return -1;
		off += len + (i < 2 ? 1 : 0);
	}
	return off == n ? 0 : -1;
}

int cp_kdf_parse(const char *s, size_t n, struct cp_kdf *out)
{
	static const char head[] = "$argon2id$v=19$";
	const char *f[3];
	size_t fl[3], off = sizeof head - 1;
	int i, sl, kl;
	if (s == NULL || out == NULL || n > CP_KDF_MAX_LEN || n < off || memcmp(s, head, off) != 0)
		return -1;
	/* Three more fields: params, salt, key; no further '$'. */
	for (i = 0; i < 3; i++) {
		const char *end = i < 2 ? memchr(s + off, '$', n - off) : s + n;
		if (end == NULL)
			return -1;
		f[i] = s + off, fl[i] = (size_t)(end - (s + off));
		off += fl[i] + (i < 2 ? 1 : 0);
	}
	if (memchr(f[2], '$', fl[2]) != NULL || params(f[0], fl[0], out) != 0)
		return -1;
	if (out->m < CP_KDF_MIN_M || out->m > CP_KDF_MAX_M || out->t < 1 || out->t > CP_KDF_MAX_T || out->p < 1 ||
	    out->p > CP_KDF_MAX_P)
		return -1;
	sl = b64(f[1], fl[1], out->salt, sizeof out->salt);
	kl = b64(f[2], fl[2], out->key, sizeof out->key);
	if (sl < CP_KDF_MIN_SALT || kl < CP_KDF_MIN_KEY || kl > CP_KDF_MAX_KEY)
		return -1;
	out->saltlen = (size_t)sl, out->keylen = (size_t)kl;
	return 0;
}

uint64_t cp_kdf_cost(const struct cp_kdf *k) { return (uint64_t)k->m * k->t; }

int cp_kdf_verify(const struct cp_kdf *k, const char *code, size_t len)
{
	uint8_t got[CP_KDF_MAX_KEY], d = 0;
	size_t i;
	if (k == NULL || code == NULL ||
	    cp_argon2id_raw(got, k->keylen, (const uint8_t *)code, len, k->salt, k->saltlen, NULL, 0, NULL, 0, k->t, k->m,
			    k->p) != 0)
		return -1;
	for (i = 0; i < k->keylen; i++)
		d |= (uint8_t)(got[i] ^ k->key[i]);
	cp_wipe(got, sizeof got);
	return d == 0;
}
