/*
 * cpcore.h — what mamori-cp.dll does with bytes, and nothing else: the
 * agent's request and answer (agent/localapi's wire format, version 2),
 * UTF-16 to UTF-8, the user name split, the code check, the
 * KERB_INTERACTIVE_UNLOCK_LOGON packing LSA reads, and the break-glass
 * file's lines. No Windows header: the same file is compiled for Linux
 * with -fsanitize=address,undefined and driven by hostile and fuzzed
 * input (asan_test.go), and into the DLL by mingw.
 */
#ifndef MAMORI_CPCORE_H
#define MAMORI_CPCORE_H

#include <stddef.h>
#include <stdint.h>

/* Limits: agent/localapi's MaxField; Windows' UNLEN/PWLEN-ish bounds. */
#define CP_MAX_FIELD 256
#define CP_MAX_USER 256
#define CP_MAX_PASSWORD 256
#define CP_MAX_CODE 64              /* UTF-16 units in the tile's code field (a PIN has up to 64 characters) */
#define CP_MAX_CODE_BYTES CP_MAX_FIELD /* the same as UTF-8 */
#define CP_MAX_REQUEST (4 + 3 + 4 * (2 + CP_MAX_FIELD))

enum { CP_ALLOW = 0, CP_DENY = 1, CP_LOCKED = 2, CP_UNREACHABLE = -1 };
enum { CP_TOTP = 0, CP_PIN = 1 };
enum { CP_OP_METHOD = 1, CP_OP_VERIFY = 2 };

/* KERB_LOGON_SUBMIT_TYPE values the provider sends. */
enum { CP_KERB_INTERACTIVE_LOGON = 2, CP_KERB_WORKSTATION_UNLOCK_LOGON = 7 };

/* cp_request writes one framed version-2 request into buf (cap bytes) and
 * returns its length, or 0 when a field is too long or has a control
 * character (the agent would refuse it). */
size_t cp_request(uint8_t *buf, size_t cap, int op, int method, const char *user, const char *service,
		  const char *rhost, const char *code);

/* cp_answer reads the agent's 6-byte answer: the verdict (op verify:
 * anything but allow or locked is a denial) or the method (op method?), or
 * CP_UNREACHABLE when it is not a well-formed answer. */
int cp_answer(const uint8_t *ans, size_t n, int op);

/* cp_utf16_to_utf8 converts n UTF-16 units (stopping at a NUL) into out
 * (cap bytes, NUL-terminated). Returns the length, or -1 for an unpaired
 * surrogate or when it does not fit. */
int cp_utf16_to_utf8(const uint16_t *in, size_t n, char *out, size_t cap);

/* cp_wlen is wcsnlen for UTF-16 units. */
size_t cp_wlen(const uint16_t *s, size_t max);

/* cp_split_user splits "DOMAIN\user", "user@domain" or "user" (UTF-16,
 * NUL-terminated, at most CP_MAX_USER units). The name part (what the
 * agent is asked about) goes to name, the domain to domain (empty when
 * none, or "." given). Returns 0, or -1 for an empty or overlong name. */
int cp_split_user(const uint16_t *in, uint16_t *domain, size_t dcap, uint16_t *name, size_t ncap);

/* cp_check_code: 0 if code (UTF-8, as cp_utf16_to_utf8 made it) can be
 * sent to the agent: 1..CP_MAX_CODE_BYTES bytes, no control character (a
 * PIN may be any printable text, agent/mfa ValidatePIN). -1 otherwise
 * (refused locally). */
int cp_check_code(const char *code);

/* cp_kerb_size is the packed size of a KERB_INTERACTIVE_UNLOCK_LOGON with
 * these string lengths (UTF-16 units), or 0 when one is over 32767 units. */
size_t cp_kerb_size(size_t dlen, size_t ulen, size_t plen);

/* cp_pack_kerb packs KERB_INTERACTIVE_UNLOCK_LOGON for 64-bit Windows the
 * way LSA reads it from a credential provider: the structure (64 bytes),
 * then domain, user and password, each UNICODE_STRING's Buffer an offset
 * from the start. Returns the size written, or 0 if cap is too small. */
size_t cp_pack_kerb(uint8_t *out, size_t cap, uint32_t msgtype, const uint16_t *domain, size_t dlen,
		    const uint16_t *user, size_t ulen, const uint16_t *pass, size_t plen);

/* cp_kerb is an unpacked serialization: pointers into the buffer. */
struct cp_kerb {
	uint32_t msgtype;
	const uint8_t *domain, *user, *password; /* UTF-16LE, not NUL-terminated */
	size_t dlen, ulen, plen;                 /* in UTF-16 units */
};

/* cp_unpack_kerb checks a packed serialization (every offset and length
 * inside the buffer, even lengths, MaximumLength >= Length) and unpacks it.
 * 0 or -1. */
int cp_unpack_kerb(const uint8_t *in, size_t n, struct cp_kerb *out);

/* A hash on a break-glass line: hex SHA-256 (64) or an argon2id string
 * (agent/mfa MaxBreakGlassHash). */
#define CP_BG_MAX_HASH 200

/* The argon2id work one cp_bg_take may spend, in KiB-passes (m*t): one
 * run at the largest parameters the parser accepts (64 MiB, 8 passes),
 * or 512 runs at the issued ones (1 MiB, 1 pass). A line past the budget
 * is kept and not matched, so a hostile file cannot make LogonUI spend
 * more than that on one answer. */
#define CP_BG_KDF_BUDGET (64ULL * 1024 * 8)

/* cp_bg_take finds user's recovery code norm (normalised, CODE_LEN
 * characters) in the break-glass file data (n bytes, as read). A line is
 * "USER SALT_HEX HASH" where HASH is hex SHA-256(salt || code) (codes
 * issued before issue 14 item 8) or an argon2id string with a salt per
 * code (internal/mfabundle HashCodeKDF): its salt's first byte is the
 * code's tag, checked before the KDF runs, as the Go side does. The lines
 * to keep are written to keep (cap bytes; *keep_len), the used code's
 * hash, as the line has it, to hash (CP_BG_MAX_HASH + 1 bytes): the agent
 * names the code by it (mfabundle.CodeID). 1 when found, 0 when not, -1 on
 * bad input or a buffer too small. agent/mfa (breakglass.go) and
 * pam_mamori.c read the same format. */
int cp_bg_take(const char *data, size_t n, const char *user, const char *norm, char *keep, size_t cap,
	       size_t *keep_len, char *hash);

/* cp_used_line writes the break-glass .used line
 * "HASH USER SERVICE RHOST UNIX_TIME\n" (fields as pam_mamori.c writes
 * them; HASH as cp_bg_take gave it: 64 hex digits or an argon2id string
 * of at most CP_BG_MAX_HASH bytes). Returns its length, or 0 if it does
 * not fit or the hash is neither. */
size_t cp_used_line(char *out, size_t cap, const char *hash, const char *user, const char *service, const char *rhost,
		    long long unix_time);

/* cp_code_tag is the tag byte of a normalised code (internal/mfabundle
 * codeTag): the first byte of SHA-256("mamori code tag v1" NUL || norm). */
uint8_t cp_code_tag(const char *norm);

/* cp_normalise_code: the recovery-code shape (mamori_common.h). 0 when
 * code is a recovery code; norm gets CODE_LEN characters and a NUL. */
int cp_normalise_code(const char *code, char norm[11]);

#endif /* MAMORI_CPCORE_H */
