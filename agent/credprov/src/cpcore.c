/*
 * cpcore.c — see cpcore.h. Portable C99; every write bounded by the
 * caller's capacity. The only allocation is argon2id's memory
 * (argon2id.c), once per KDF run, wiped and freed.
 */
#include "cpcore.h"

#include "argon2id.h"

#include "../../pam/mamori_common.h"

static int put_field(uint8_t *buf, size_t cap, size_t *off, const char *s)
{
	size_t n = s ? strlen(s) : 0, i;
	if (n > CP_MAX_FIELD || *off + 2 + n > cap)
		return -1;
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -1;
	buf[(*off)++] = (uint8_t)(n >> 8);
	buf[(*off)++] = (uint8_t)n;
	if (n)
		memcpy(buf + *off, s, n);
	*off += n;
	return 0;
}

size_t cp_request(uint8_t *buf, size_t cap, int op, int method, const char *user, const char *service,
		  const char *rhost, const char *code)
{
	size_t off = 4, body;
	if (cap < 7 || user == NULL || *user == 0)
		return 0;
	buf[off++] = 2;
	buf[off++] = (uint8_t)op;
	buf[off++] = (uint8_t)method;
	if (put_field(buf, cap, &off, user) || put_field(buf, cap, &off, service) || put_field(buf, cap, &off, rhost) ||
	    put_field(buf, cap, &off, op == CP_OP_METHOD ? "" : code))
		return 0;
	body = off - 4;
	buf[0] = (uint8_t)(body >> 24), buf[1] = (uint8_t)(body >> 16);
	buf[2] = (uint8_t)(body >> 8), buf[3] = (uint8_t)body;
	return off;
}

int cp_answer(const uint8_t *ans, size_t n, int op)
{
	if (ans == NULL || n != 6 || ans[0] != 0 || ans[1] != 0 || ans[2] != 0 || ans[3] != 2 || ans[4] != 2)
		return CP_UNREACHABLE;
	if (op == CP_OP_METHOD)
		return ans[5] == CP_PIN ? CP_PIN : CP_TOTP;
	return ans[5] == CP_ALLOW ? CP_ALLOW : ans[5] == CP_LOCKED ? CP_LOCKED : CP_DENY;
}

size_t cp_wlen(const uint16_t *s, size_t max)
{
	size_t n = 0;
	if (s == NULL)
		return 0;
	while (n < max && s[n] != 0)
		n++;
	return n;
}

int cp_utf16_to_utf8(const uint16_t *in, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;
	if (out == NULL || cap == 0)
		return -1;
	for (i = 0; i < n && in[i] != 0; i++) {
		uint32_t c = in[i];
		unsigned char b[4];
		size_t k;
		if (c >= 0xd800 && c <= 0xdbff) {
			if (i + 1 >= n || in[i + 1] < 0xdc00 || in[i + 1] > 0xdfff)
				return -1;
			c = 0x10000 + ((c - 0xd800) << 10) + (in[i + 1] - 0xdc00);
			i++;
		} else if (c >= 0xdc00 && c <= 0xdfff) {
			return -1;
		}
		if (c < 0x80) {
			b[0] = (unsigned char)c, k = 1;
		} else if (c < 0x800) {
			b[0] = (unsigned char)(0xc0 | c >> 6), b[1] = (unsigned char)(0x80 | (c & 0x3f)), k = 2;
		} else if (c < 0x10000) {
			b[0] = (unsigned char)(0xe0 | c >> 12), b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
			b[2] = (unsigned char)(0x80 | (c & 0x3f)), k = 3;
		} else {
			b[0] = (unsigned char)(0xf0 | c >> 18), b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
			b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f)), b[3] = (unsigned char)(0x80 | (c & 0x3f)), k = 4;
		}
		if (o + k + 1 > cap)
			return -1;
		memcpy(out + o, b, k);
		o += k;
	}
	out[o] = 0;
	return (int)o;
}

int cp_split_user(const uint16_t *in, uint16_t *domain, size_t dcap, uint16_t *name, size_t ncap)
{
	size_t n = cp_wlen(in, CP_MAX_USER + 1), i, bs = n, at = n;
	if (n == 0 || n > CP_MAX_USER || dcap == 0 || ncap == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (in[i] == '\\' && bs == n)
			bs = i;
		if (in[i] == '@')
			at = i;
	}
	domain[0] = 0;
	if (bs < n) { /* DOMAIN\user */
		size_t dl = bs, ul = n - bs - 1;
		if (ul == 0 || ul + 1 > ncap || dl + 1 > dcap)
			return -1;
		memcpy(name, in + bs + 1, ul * 2);
		name[ul] = 0;
		if (!(dl == 1 && in[0] == '.')) {
			memcpy(domain, in, dl * 2);
			domain[dl] = 0;
		}
		return 0;
	}
	if (at < n) { /* user@domain */
		size_t ul = at, dl = n - at - 1;
		if (ul == 0 || ul + 1 > ncap || dl + 1 > dcap)
			return -1;
		memcpy(name, in, ul * 2);
		name[ul] = 0;
		memcpy(domain, in + at + 1, dl * 2);
		domain[dl] = 0;
		return 0;
	}
	if (n + 1 > ncap)
		return -1;
	memcpy(name, in, n * 2);
	name[n] = 0;
	return 0;
}

int cp_check_code(const char *code)
{
	size_t n;
	if (code == NULL)
		return -1;
	n = strlen(code);
	if (n == 0 || n > CP_MAX_CODE_BYTES)
		return -1;
	for (; *code; code++)
		if ((unsigned char)*code < 0x20 || (unsigned char)*code == 0x7f)
			return -1;
	return 0;
}

#define KERB_HEADER 64

size_t cp_kerb_size(size_t dlen, size_t ulen, size_t plen)
{
	if (dlen > 32767 || ulen > 32767 || plen > 32767)
		return 0;
	return KERB_HEADER + 2 * (dlen + ulen + plen);
}

static void le16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void le32(uint8_t *p, uint32_t v) { le16(p, v), le16(p + 2, v >> 16); }
static void le64(uint8_t *p, uint64_t v) { le32(p, (uint32_t)v), le32(p + 4, (uint32_t)(v >> 32)); }
static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* One UNICODE_STRING at off (Length, MaximumLength, 4 bytes padding,
 * Buffer) pointing at *pos, and the string's bytes copied there. */
static void put_ustr(uint8_t *out, size_t off, size_t *pos, const uint16_t *s, size_t len)
{
	size_t i;
	le16(out + off, (uint32_t)(2 * len));
	le16(out + off + 2, (uint32_t)(2 * len));
	le32(out + off + 4, 0);
	le64(out + off + 8, (uint64_t)*pos);
	for (i = 0; i < len; i++)
		le16(out + *pos + 2 * i, s[i]);
	*pos += 2 * len;
}

size_t cp_pack_kerb(uint8_t *out, size_t cap, uint32_t msgtype, const uint16_t *domain, size_t dlen,
		    const uint16_t *user, size_t ulen, const uint16_t *pass, size_t plen)
{
	size_t size = cp_kerb_size(dlen, ulen, plen), pos = KERB_HEADER;
	if (size == 0 || size > cap)
		return 0;
	memset(out, 0, KERB_HEADER);
	le32(out, msgtype);
	put_ustr(out, 8, &pos, domain, dlen);
	put_ustr(out, 24, &pos, user, ulen);
	put_ustr(out, 40, &pos, pass, plen);
	/* LogonId (LUID, offset 56) stays zero. */
	return size;
}

static int get_ustr(const uint8_t *in, size_t n, size_t off, const uint8_t **s, size_t *len)
{
	uint32_t l = rd16(in + off), max = rd16(in + off + 2);
	uint64_t buf = rd64(in + off + 8);
	if (l % 2 != 0 || max < l || buf < KERB_HEADER || buf > n || l > n - buf)
		return -1;
	*s = in + buf;
	*len = l / 2;
	return 0;
}

int cp_unpack_kerb(const uint8_t *in, size_t n, struct cp_kerb *out)
{
	if (in == NULL || out == NULL || n < KERB_HEADER || n > (1u << 20))
		return -1;
	out->msgtype = rd32(in);
	if (get_ustr(in, n, 8, &out->domain, &out->dlen) || get_ustr(in, n, 24, &out->user, &out->ulen) ||
	    get_ustr(in, n, 40, &out->password, &out->plen))
		return -1;
	return 0;
}

int cp_normalise_code(const char *code, char norm[11])
{
	if (code == NULL || strlen(code) > CP_MAX_CODE_BYTES)
		return -1;
	return normalise_code(code, norm);
}

/* The fields of one line: up to three words separated by spaces or tabs. */
static int words(const char *line, size_t n, const char *w[3], size_t wl[3])
{
	size_t i = 0, k = 0;
	while (k < 3) {
		while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
			i++;
		if (i == n)
			break;
		w[k] = line + i;
		while (i < n && line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			i++;
		wl[k] = (size_t)(line + i - w[k]);
		k++;
	}
	return (int)k;
}

uint8_t cp_code_tag(const char *norm)
{
	static const char dom[] = "mamori code tag v1"; /* hashed with its NUL */
	struct sha256 s;
	unsigned char d[32];
	uint8_t tag;
	sha256_init(&s);
	sha256_update(&s, (const unsigned char *)dom, sizeof dom);
	sha256_update(&s, (const unsigned char *)norm, strlen(norm));
	sha256_final(&s, d);
	tag = d[0];
	cp_wipe(d, sizeof d);
	cp_wipe(&s, sizeof s);
	return tag;
}

/* legacy_match: a "SALT_HEX SHA256_HEX" pair against norm. */
static int legacy_match(const char *salt_w, size_t sl, const char *hash_w, const char *norm)
{
	unsigned char salt[64], dig[32];
	char salt_hex[129], mine[65];
	struct sha256 s;
	int i, ok;
	if (sl % 2 != 0 || sl > 128)
		return 0;
	memcpy(salt_hex, salt_w, sl);
	salt_hex[sl] = 0;
	if (unhex(salt_hex, sl, salt) != 0)
		return 0;
	sha256_init(&s);
	sha256_update(&s, salt, sl / 2);
	sha256_update(&s, (const unsigned char *)norm, CODE_LEN);
	sha256_final(&s, dig);
	for (i = 0; i < 32; i++)
		snprintf(mine + 2 * i, 3, "%02x", dig[i]);
	ok = equal_ct(mine, hash_w, 64);
	cp_wipe(mine, sizeof mine);
	cp_wipe(dig, sizeof dig);
	return ok;
}

/* is_kdf: an argon2id string by its prefix, as mfabundle.IsCodeKDF. */
static int is_kdf(const char *w, size_t wl) { return wl >= 10 && memcmp(w, "$argon2id$", 10) == 0; }

/* kdf_match: an argon2id string against norm, within the budget left
 * (*budget, KiB-passes; spent when the KDF runs). The tag byte is
 * checked first: another code's line costs no KDF run. */
static int kdf_match(const char *w, size_t wl, const char *norm, uint8_t tag, uint64_t *budget)
{
	struct cp_kdf k;
	int ok;
	if (cp_kdf_parse(w, wl, &k) != 0 || k.salt[0] != tag || cp_kdf_cost(&k) > *budget)
		return 0;
	*budget -= cp_kdf_cost(&k);
	ok = cp_kdf_verify(&k, norm, CODE_LEN) == 1;
	cp_wipe(&k, sizeof k);
	return ok;
}

int cp_bg_take(const char *data, size_t n, const char *user, const char *norm, char *keep, size_t cap,
	       size_t *keep_len, char *hash)
{
	size_t off = 0, out = 0, ul;
	uint64_t budget = CP_BG_KDF_BUDGET;
	uint8_t tag;
	int found = 0;
	if (data == NULL || user == NULL || norm == NULL || keep == NULL || keep_len == NULL || hash == NULL ||
	    strlen(norm) != CODE_LEN || (ul = strlen(user)) == 0 || ul > CP_MAX_FIELD)
		return -1;
	hash[0] = 0;
	tag = cp_code_tag(norm);
	while (off < n) {
		const char *line = data + off, *nl = memchr(line, '\n', n - off);
		size_t len = nl ? (size_t)(nl - line) : n - off;
		const char *w[3];
		size_t wl[3];
		off += len + (nl ? 1 : 0);
		if (!found && len > 0 && line[0] != '#' && words(line, len, w, wl) == 3 && wl[0] == ul &&
		    memcmp(w[0], user, ul) == 0 && wl[2] <= CP_BG_MAX_HASH &&
		    (is_kdf(w[2], wl[2]) ? kdf_match(w[2], wl[2], norm, tag, &budget)
						: wl[2] == 64 && legacy_match(w[1], wl[1], w[2], norm))) {
			memcpy(hash, w[2], wl[2]);
			hash[wl[2]] = 0;
			found = 1;
			continue;
		}
		if (out + len + 1 > cap)
			return -1;
		memcpy(keep + out, line, len);
		out += len;
		keep[out++] = '\n';
	}
	*keep_len = out;
	return found;
}

static size_t used_field(char *dst, size_t cap, const char *s)
{
	size_t i = 0;
	if (s != NULL)
		for (; s[i] != 0 && i < 64 && i + 1 < cap; i++)
			dst[i] = ((unsigned char)s[i] <= ' ' || s[i] == 0x7f) ? '?' : s[i];
	if (i == 0 && cap > 1)
		dst[i++] = '-';
	dst[i] = 0;
	return i;
}

size_t cp_used_line(char *out, size_t cap, const char *hash, const char *user, const char *service, const char *rhost,
		    long long unix_time)
{
	char fu[65], fs[65], fr[65];
	int n;
	struct cp_kdf k;
	size_t hl, i;
	if (hash == NULL || (hl = strlen(hash)) == 0 || hl > CP_BG_MAX_HASH)
		return 0;
	if (!is_kdf(hash, hl)) {
		if (hl != 64)
			return 0;
		for (i = 0; i < hl; i++)
			if (!isxdigit((unsigned char)hash[i]))
				return 0;
	} else if (cp_kdf_parse(hash, hl, &k) != 0) {
		return 0;
	}
	used_field(fu, sizeof fu, user);
	used_field(fs, sizeof fs, service);
	used_field(fr, sizeof fr, rhost);
	n = snprintf(out, cap, "%s %s %s %s %lld\n", hash, fu, fs, fr, unix_time);
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}
